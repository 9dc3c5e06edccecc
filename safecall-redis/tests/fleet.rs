//! Replicas on a real `redis-server` (started by each test, see `support`):
//! propagation, no store work per call, faults, hostile messages, reporters.

mod support;

use std::time::Duration;

use safecall::fleet::ReplicaId;
use safecall::{BreakerConfig, BreakerRegistry, BreakerState, Outcome, RefusalCause};
use safecall_redis::RedisSync;
use support::{Proxy, RedisServer, eventually, quantile};

const BOUND: Duration = Duration::from_secs(10);
const S: Duration = Duration::from_secs(1);

async fn replica_with(
    sync: RedisSync,
    config: BreakerConfig,
) -> (BreakerRegistry<String>, ReplicaId) {
    let id = sync.replica();
    let registry = BreakerRegistry::<String>::new(config).sync(sync);
    let r = registry.clone();
    eventually("the replica is connected", BOUND, || {
        let connected = r.sync_status().is_some_and(|s| s.connected);
        async move { connected }
    })
    .await;
    (registry, id)
}

async fn replica(url: &str, ns: &str) -> (BreakerRegistry<String>, ReplicaId) {
    let sync = RedisSync::connect(url, ns).await.expect("connect");
    replica_with(sync, BreakerConfig::default()).await
}

fn held_by(registry: &BreakerRegistry<String>, key: &str) -> Option<ReplicaId> {
    match registry.get(key).try_acquire() {
        Err(r) => match r.cause() {
            RefusalCause::RemoteHold { origin } => Some(origin),
            _ => None,
        },
        Ok(p) => {
            drop(p); // released without counting
            None
        }
    }
}

fn too_many_requests(registry: &BreakerRegistry<String>, key: &str, hint: Duration) {
    registry
        .get(key)
        .try_acquire()
        .expect("admitted")
        .record(Outcome::RetryAfter(hint));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_one_replica_makes_the_other_two_refuse_the_key_within_50ms_p99() {
    let Some(server) = RedisServer::start("propagation").await else {
        return;
    };
    let (a, a_id) = replica(&server.url(), "prop").await;
    let (b, _) = replica(&server.url(), "prop").await;
    let (c, _) = replica(&server.url(), "prop").await;

    let mut delays = Vec::new();
    for i in 0..200 {
        let key = format!("org-{i}");
        // B and C have used the key before (half the time) or not at all.
        if i % 2 == 0 {
            drop(b.get(&key));
            drop(c.get(&key));
        }
        let start = tokio::time::Instant::now();
        too_many_requests(&a, &key, S * 20);
        // Polled without a timer (tokio's timer ticks in milliseconds, which
        // would be most of what is measured).
        let (mut b_held, mut c_held) = (false, false);
        while !(b_held && c_held) {
            b_held = b_held || held_by(&b, &key) == Some(a_id);
            c_held = c_held || held_by(&c, &key) == Some(a_id);
            assert!(start.elapsed() < BOUND, "B and C refuse {key}");
            tokio::task::yield_now().await;
        }
        delays.push(start.elapsed());
    }
    // The hold's time is the hint's, within the propagation delay.
    let refused = b.get("org-0").try_acquire().unwrap_err();
    assert!(refused.retry_in() <= S * 20 && refused.retry_in() > S * 19);
    assert_eq!(b.get("org-0").state(), BreakerState::Open);

    delays.sort();
    let (p50, p99) = (quantile(&delays, 0.5), quantile(&delays, 0.99));
    eprintln!("propagation A -> B and C over loopback, 200 keys: p50 {p50:?}, p99 {p99:?}");
    // The target is 50 ms; a loaded CI machine gets some slack before this
    // fails, and the figure is printed either way.
    assert!(p99 <= Duration::from_millis(250), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_calls_send_no_command_beyond_the_transitions() {
    let Some(server) = RedisServer::start("commandstats").await else {
        return;
    };
    let (a, _) = replica(&server.url(), "cmds").await;
    let (b, _) = replica(&server.url(), "cmds").await;
    let before = server.data_commands().await;
    for i in 0..100_000u32 {
        let registry = if i % 2 == 0 { &a } else { &b };
        let breaker = registry.get(&format!("org-{}", i % 1000));
        breaker
            .try_acquire()
            .expect("closed")
            .record(Outcome::Success);
    }
    let after = server.data_commands().await;
    eprintln!(
        "INFO commandstats: {} commands for 100,000 calls",
        after - before
    );
    assert_eq!(after - before, 0, "{:?}", server.commandstats().await);

    // One cool-down: one SET and one PUBLISH.
    too_many_requests(&a, "org-1", S * 5);
    eventually("B holds org-1", BOUND, || {
        let held = held_by(&b, "org-1").is_some();
        async move { held }
    })
    .await;
    let stats = server.commandstats().await;
    let calls = |n: &str| stats.iter().find(|(c, _)| c == n).map_or(0, |(_, k)| *k);
    assert_eq!(server.data_commands().await - after, 2, "{stats:?}");
    assert_eq!((calls("set"), calls("publish")), (1, 1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_fails_and_delays_no_call_and_a_restart_resyncs() {
    let Some(mut server) = RedisServer::start("kill").await else {
        return;
    };
    let sync = RedisSync::connect(&server.url(), "kill")
        .await
        .expect("connect")
        .reconnect_delay(Duration::from_millis(50));
    let (a, a_id) = replica_with(sync, BreakerConfig::default()).await;
    let sync = RedisSync::connect(&server.url(), "kill")
        .await
        .expect("connect")
        .reconnect_delay(Duration::from_millis(50));
    let (b, _) = replica_with(sync, BreakerConfig::default()).await;

    server.kill();
    eventually("B sees the store gone", BOUND, || {
        let down = b.sync_status().is_some_and(|s| !s.connected && s.degraded);
        async move { down }
    })
    .await;
    let mut slowest = Duration::ZERO;
    for i in 0..10_000u32 {
        let t = std::time::Instant::now();
        let breaker = a.get(&format!("org-{}", i % 100));
        let permit = breaker.try_acquire().expect("no call fails");
        permit.record(Outcome::Success);
        if i % 1000 == 0 {
            // A transition to share while the store is dead (its own key).
            too_many_requests(&a, &format!("cool-{i}"), S);
        }
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("slowest call with Redis dead: {slowest:?}");
    // A call that waited on Redis would take a command timeout (1 s here,
    // 200 ms in the stall test) or more; the margin is for a loaded machine.
    assert!(slowest < Duration::from_millis(150), "{slowest:?}");
    let report = safecall::HealthChecks::builder()
        .check(b.sync_check())
        .build()
        .expect("checks")
        .run()
        .await;
    let entry = report.integration("state sync").expect("entry");
    assert_eq!(
        entry.status,
        safecall::HealthStatus::Degraded,
        "{}",
        entry.message
    );
    assert!(entry.message.contains("degraded"), "{}", entry.message);

    server.restart().await;
    eventually("both resubscribe", BOUND, || {
        let up = a.sync_status().is_some_and(|s| s.connected)
            && b.sync_status().is_some_and(|s| s.connected);
        async move { up }
    })
    .await;
    too_many_requests(&a, "org-after", S * 20);
    eventually("B holds a key cooled down after the restart", BOUND, || {
        let held = held_by(&b, "org-after") == Some(a_id);
        async move { held }
    })
    .await;

    // A replica that was away reads the holds of the keys it has.
    drop(b);
    let late = BreakerRegistry::<String>::new(BreakerConfig::default());
    drop(late.get("org-after"));
    let sync = RedisSync::connect(&server.url(), "kill")
        .await
        .expect("connect");
    let late = late.sync(sync);
    eventually(
        "a late replica reads the hold of a key it has",
        BOUND,
        || {
            let held = held_by(&late, "org-after") == Some(a_id);
            async move { held }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_blocks_no_call_and_the_queue_stays_bounded() {
    let Some(server) = RedisServer::start("stall").await else {
        return;
    };
    let proxy = Proxy::start(server.port).await;
    let sync = RedisSync::connect(&proxy.url(), "stall")
        .await
        .expect("connect")
        .queue_capacity(16)
        .command_timeout(Duration::from_millis(200));
    let (a, _) = replica_with(sync, BreakerConfig::default()).await;
    proxy.stall();
    let mut slowest = Duration::ZERO;
    for i in 0..2_000u32 {
        let t = std::time::Instant::now();
        too_many_requests(&a, &format!("org-{i}"), S * 30);
        slowest = slowest.max(t.elapsed());
        let queued = a.sync_status().map_or(0, |s| s.queued);
        assert!(queued <= 16, "{queued}");
    }
    eprintln!("slowest call with the link stalled: {slowest:?}");
    // A call that waited on Redis would take a command timeout (1 s here,
    // 200 ms in the stall test) or more; the margin is for a loaded machine.
    assert!(slowest < Duration::from_millis(150), "{slowest:?}");
    let st = a.sync_status().expect("status");
    assert!(st.queue_drops > 0, "{st:?}");
    assert!(st.degraded, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_is_ignored_and_counted_and_long_holds_are_capped() {
    let Some(server) = RedisServer::start("garbage").await else {
        return;
    };
    let sync = RedisSync::connect(&server.url(), "junk")
        .await
        .expect("connect")
        .max_remote_hold(S * 60);
    let (b, _) = replica_with(sync, BreakerConfig::default()).await;
    let mut raw = server.conn().await;
    let junk: [&[u8]; 6] = [
        b"hello",
        b"sc1 zzzz cool 100 org-1",
        b"sc1 000000aa warm 100 org-1",
        b"sc1 000000aa cool -5 org-1",
        b"\xff\xfe\x00",
        b"sc9 000000aa cool 100 org-1",
    ];
    for m in junk {
        let _: () = redis::cmd("PUBLISH")
            .arg("safecall:junk:events")
            .arg(m)
            .query_async(&mut raw)
            .await
            .expect("publish");
    }
    eventually("every message counted as ignored", BOUND, || {
        let n = b.sync_status().map_or(0, |s| s.ignored_messages);
        async move { n >= 6 }
    })
    .await;
    assert_eq!(b.get("org-1").state(), BreakerState::Closed);

    // A day-long hold from a hostile or broken replica: cut to the cap.
    let _: () = redis::cmd("PUBLISH")
        .arg("safecall:junk:events")
        .arg("sc1 000000aa forced 86400000 org-1")
        .query_async(&mut raw)
        .await
        .expect("publish");
    eventually("the hold is applied, capped", BOUND, || {
        let r = b.get("org-1").try_acquire().err();
        async move {
            r.is_some_and(|r| {
                r.cause()
                    == RefusalCause::RemoteHold {
                        origin: ReplicaId::new(0xaa),
                    }
                    && r.retry_in() <= S * 60
            })
        }
    })
    .await;
    assert_eq!(b.sync_status().map(|s| s.holds_capped), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replicas_failure_open_alone_does_not_open_the_others_two_do() {
    let Some(server) = RedisServer::start("reporters").await else {
        return;
    };
    let config = || BreakerConfig::default().consecutive_failures(1);
    let url = server.url();
    let connect = || RedisSync::connect(&url, "rep");
    let (a, a_id) = replica_with(connect().await.expect("a"), config()).await;
    let (b, b_id) = replica_with(connect().await.expect("b"), config()).await;
    let (c, _) = replica_with(connect().await.expect("c"), config()).await;
    let fail = |r: &BreakerRegistry<String>| {
        r.get("org-1")
            .try_acquire()
            .expect("closed")
            .record(Outcome::Failure);
    };

    fail(&a);
    assert_eq!(a.get("org-1").state(), BreakerState::Open);
    // A marker sent after A's report, on the same connection: once C holds
    // it, C has read the report too.
    too_many_requests(&a, "marker-1", S * 20);
    eventually("C saw A's messages", BOUND, || {
        let seen = held_by(&c, "marker-1").is_some();
        async move { seen }
    })
    .await;
    assert_eq!(
        c.get("org-1").state(),
        BreakerState::Closed,
        "one report is not enough"
    );
    assert!(c.get("org-1").try_acquire().is_ok());

    fail(&b);
    eventually("two reports hold the key on C", BOUND, || {
        let origin = held_by(&c, "org-1");
        async move { origin == Some(b_id) || origin == Some(a_id) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_shows() {
    // Nothing listens on this port: connecting fails, and the failure is
    // reported without the password.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("redis://:hunter2secret@127.0.0.1:{port}/0");
    let sync = RedisSync::connect(&url, "pw")
        .await
        .expect("a store that is down does not fail connect")
        .command_timeout(Duration::from_millis(200))
        .reconnect_delay(Duration::from_millis(20));
    let shown = format!("{sync:?}");
    assert!(!shown.contains("hunter2secret"), "{shown}");
    let registry = BreakerRegistry::<String>::new(BreakerConfig::default()).sync(sync);
    eventually("the failure is reported", BOUND, || {
        let st = registry.sync_status();
        async move { st.is_some_and(|s| s.detail.is_some()) }
    })
    .await;
    let st = registry.sync_status().expect("status");
    let detail = st.detail.clone().unwrap_or_default();
    assert!(!detail.contains("hunter2secret"), "{detail}");
    assert!(detail.contains("***@127.0.0.1"), "{detail}");
    let report = safecall::HealthChecks::builder()
        .check(registry.sync_check())
        .build()
        .expect("checks")
        .run()
        .await;
    let entry = report.integration("state sync").expect("entry");
    assert!(!format!("{entry:?}").contains("hunter2secret"));
    let bad = RedisSync::connect("redis://:hunter2secret@", "pw")
        .await
        .err();
    assert!(!format!("{bad:?}").contains("hunter2secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_path_costs_the_same_with_sync_on_and_off() {
    let Some(server) = RedisServer::start("hot path").await else {
        return;
    };
    let (on, _) = replica(&server.url(), "hot").await;
    let off = BreakerRegistry::<String>::new(BreakerConfig::default());
    let on_b = on.get("org-1");
    let off_b = off.get("org-1");
    let run = |b: &safecall::Breaker| {
        let t = std::time::Instant::now();
        for _ in 0..200_000 {
            b.try_acquire().expect("closed").record(Outcome::Success);
        }
        t.elapsed()
    };
    // Interleaved rounds, best of each: the same run, the same machine.
    let (mut best_on, mut best_off) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        best_off = best_off.min(run(&off_b));
        best_on = best_on.min(run(&on_b));
    }
    eprintln!("200,000 closed calls: sync off {best_off:?}, sync on {best_on:?}");
    assert!(
        best_on < best_off * 2 + Duration::from_millis(5),
        "{best_on:?} vs {best_off:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_published_as_soon_as_both_are_built_is_not_missed() {
    let Some(server) = RedisServer::start("no wait").await else {
        return;
    };
    let a_sync = RedisSync::connect(&server.url(), "nowait")
        .await
        .expect("a");
    let a_id = a_sync.replica();
    let a = BreakerRegistry::<String>::new(BreakerConfig::default()).sync(a_sync);
    let b = BreakerRegistry::<String>::new(BreakerConfig::default()).sync(
        RedisSync::connect(&server.url(), "nowait")
            .await
            .expect("b"),
    );
    too_many_requests(&a, "org-1", S * 20);
    eventually("B holds org-1", BOUND, || {
        let held = held_by(&b, "org-1") == Some(a_id);
        async move { held }
    })
    .await;
}
