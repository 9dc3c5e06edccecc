//! The keyed registry: lazy creation, isolation, eviction, the cap and the
//! overflow breaker.

mod support;

use std::time::Duration;

use safecall::{Breaker, BreakerConfig, BreakerRegistry, BreakerState, Outcome};
use tokio::time::advance;

const S: Duration = Duration::from_secs(1);

fn cfg() -> BreakerConfig {
    BreakerConfig::default()
        .consecutive_failures(1)
        .no_failure_rate()
        .open_duration(30 * S)
}

fn trip(b: &Breaker) {
    b.try_acquire().expect("closed").record(Outcome::Failure);
}

#[tokio::test(start_paused = true)]
async fn one_breaker_per_key_looked_up_by_borrowed_key() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg());
    assert!(r.is_empty());
    let a = r.get("org-46cf");
    let key = String::from("org-46cf");
    assert!(a.ptr_eq(&r.get(&key)));
    assert!(!a.ptr_eq(&r.get("org-7a01")));
    assert_eq!(r.len(), 2);
    assert!(!r.is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_tenants_failures_never_touch_another_tenants_breaker() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg());
    trip(&r.get("broken"));
    assert_eq!(r.get("broken").state(), BreakerState::Open);
    assert_eq!(r.get("healthy").state(), BreakerState::Closed);
    assert!(r.get("healthy").try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_every_key() {
    let r: BreakerRegistry<u64> = BreakerRegistry::new(cfg());
    trip(&r.get(&1));
    let _ = r.get(&2);
    advance(10 * S).await;
    let mut snaps = r.snapshot();
    snaps.sort_by_key(|s| s.key);
    assert_eq!(snaps.len(), 2);
    assert_eq!((snaps[0].key, snaps[0].state), (1, BreakerState::Open));
    assert_eq!(snaps[0].consecutive_failures, 1);
    assert_eq!(snaps[0].retry_in, Some(20 * S));
    assert_eq!(
        (snaps[1].key, snaps[1].state, snaps[1].retry_in),
        (2, BreakerState::Closed, None)
    );
}

#[tokio::test(start_paused = true)]
async fn idle_closed_breakers_are_evicted_after_the_ttl() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).idle_ttl(600 * S);
    let _ = r.get("idle");
    let _ = r.get("busy");
    advance(300 * S).await;
    let _ = r.get("busy");
    r.retain_recent();
    assert_eq!(r.len(), 2, "nothing idle for the TTL yet");
    advance(300 * S).await;
    r.retain_recent();
    let keys: Vec<String> = r.snapshot().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, vec!["busy".to_owned()]);
}

#[tokio::test(start_paused = true)]
async fn ttl_eviction_runs_by_itself_as_new_keys_arrive() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(100).idle_ttl(60 * S);
    for k in 0..50 {
        let _ = r.get(&k);
    }
    advance(61 * S).await;
    // Housekeeping looks at a few entries per new key: 50 new keys take the
    // hand past every old one.
    for k in 1000..1050 {
        let _ = r.get(&k);
    }
    assert_eq!(r.len(), 50);
    assert!(
        r.snapshot().iter().all(|s| s.key >= 1000),
        "the idle ones went"
    );
}

#[tokio::test(start_paused = true)]
async fn open_and_half_open_breakers_are_never_evicted() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).max_keys(2).idle_ttl(S);
    trip(&r.get("a"));
    trip(&r.get("b"));
    advance(10 * S).await;
    r.retain_recent();
    assert_eq!(r.len(), 2);
    let c = r.get("c");
    assert!(c.ptr_eq(r.overflow()), "full of open breakers: overflow");
    advance(30 * S).await;
    assert_eq!(r.get("a").state(), BreakerState::HalfOpen);
    r.retain_recent();
    let _ = r.get("d");
    let mut keys: Vec<_> = r.snapshot().into_iter().map(|s| (s.key, s.state)).collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        keys,
        vec![
            ("a".to_owned(), BreakerState::HalfOpen),
            ("b".to_owned(), BreakerState::HalfOpen)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn forced_open_and_cooling_down_breakers_are_never_evicted() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).max_keys(2).idle_ttl(S);
    r.get("forced").force_open();
    r.get("quiet")
        .try_acquire()
        .unwrap()
        .record(Outcome::RetryAfter(3600 * S));
    // Still within the cool-down (bounded by `max_cooldown`, 60 s).
    advance(59 * S).await;
    r.retain_recent();
    assert!(r.get("new").ptr_eq(r.overflow()));
    assert_eq!(r.len(), 2);
}

/// Issue 11, defect 1: a day-long hint cools the key for `max_cooldown` only;
/// after it and its probe the key can be evicted like any idle one.
#[tokio::test(start_paused = true)]
async fn a_cool_down_ends_at_max_cooldown_and_the_key_can_then_go() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).max_keys(1).idle_ttl(S);
    r.get("quiet")
        .try_acquire()
        .unwrap()
        .record(Outcome::RetryAfter(86_400 * S));
    let refused = r.get("quiet").try_acquire().unwrap_err();
    assert_eq!(refused.retry_in(), 60 * S);
    advance(60 * S).await;
    // The next call is a probe; once it has answered, the key is an ordinary
    // closed one again.
    let quiet = r.get("quiet");
    let probe = quiet.try_acquire().unwrap();
    assert!(probe.is_probe());
    probe.record(Outcome::Success);
    assert_eq!(quiet.state(), BreakerState::Closed);
    drop(quiet);
    advance(2 * S).await;
    r.retain_recent();
    assert!(
        !r.get("new").ptr_eq(r.overflow()),
        "the cooled key made room"
    );
}

/// A cool-down that has run out pins nothing, though nobody has called the
/// key since (its flag is only cleared by the next call).
#[tokio::test(start_paused = true)]
async fn a_key_whose_cool_down_ran_out_can_go_without_another_call() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).max_keys(1).idle_ttl(S);
    r.get("quiet")
        .try_acquire()
        .unwrap()
        .record(Outcome::RetryAfter(10 * S));
    advance(5 * S).await;
    r.retain_recent();
    assert!(r.get("new").ptr_eq(r.overflow()), "still cooling: kept");
    advance(6 * S).await;
    r.retain_recent();
    assert!(!r.get("new").ptr_eq(r.overflow()), "the cool-down ran out");
}

#[tokio::test(start_paused = true)]
async fn a_held_handle_keeps_its_breaker_so_a_key_never_has_two() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).max_keys(1).idle_ttl(S);
    let held = r.get("held");
    advance(3600 * S).await;
    r.retain_recent();
    let other = r.get("other");
    assert!(
        other.ptr_eq(r.overflow()),
        "the held breaker is not evicted"
    );
    assert!(held.ptr_eq(&r.get("held")));
    drop(held);
    let other = r.get("other");
    assert!(!other.ptr_eq(r.overflow()), "released: evictable now");
    assert_eq!(r.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn at_the_cap_the_least_recently_used_idle_breaker_goes_first() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg()).max_keys(3);
    for k in ["a", "b", "c"] {
        let _ = r.get(k);
        advance(S).await;
    }
    let _ = r.get("a"); // a is now the most recently used
    advance(S).await;
    let _ = r.get("d");
    let mut keys: Vec<_> = r.snapshot().into_iter().map(|s| s.key).collect();
    keys.sort();
    assert_eq!(keys, vec!["a", "c", "d"]);
}

#[tokio::test(start_paused = true)]
async fn full_registry_sends_new_keys_to_one_overflow_breaker() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(2);
    let held: Vec<Breaker> = (0..2).map(|k| r.get(&k)).collect();
    let x = r.get(&10);
    let y = r.get(&11);
    assert!(x.ptr_eq(&y) && x.ptr_eq(r.overflow()));
    assert_eq!(r.len(), 2);
    // The overflow breaker protects too.
    trip(&x);
    assert_eq!(r.get(&12).state(), BreakerState::Open);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn zero_max_keys_sends_everything_to_the_overflow_breaker() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(0);
    assert!(r.get(&1).ptr_eq(r.overflow()));
    assert!(r.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_million_keys_through_a_cap_of_100k_keep_len_bounded() {
    let r: BreakerRegistry<u64> = BreakerRegistry::new(cfg()).max_keys(100_000);
    let mut overflowed = 0u32;
    for k in 0..1_000_000u64 {
        let b = r.get(&k);
        overflowed += u32::from(b.ptr_eq(r.overflow()));
        if k % 100_000 == 0 {
            assert!(r.len() <= 100_000);
        }
    }
    assert!(r.len() <= 100_000);
    assert!(
        r.len() > 90_000,
        "eviction frees room in batches, not all at once"
    );
    assert_eq!(overflowed, 0, "idle closed breakers were always evictable");
}

#[tokio::test(start_paused = true)]
async fn per_key_config_overrides_apply() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg())
        .with_key_config("vip".into(), cfg().consecutive_failures(3))
        .unwrap();
    trip(&r.get("vip"));
    assert_eq!(r.get("vip").state(), BreakerState::Closed);
    trip(&r.get("regular"));
    assert_eq!(r.get("regular").state(), BreakerState::Open);
    let bad = BreakerRegistry::<String>::new(cfg())
        .with_key_config("x".into(), cfg().half_open_probes(0))
        .unwrap_err();
    assert_eq!(bad.field(), "half_open_probes");
}

#[test]
fn try_new_refuses_a_bad_config() {
    let e = BreakerRegistry::<String>::try_new(BreakerConfig::default().failure_rate(0.0, S))
        .unwrap_err();
    assert_eq!(e.field(), "failure_rate.ratio");
}

#[test]
#[should_panic(expected = "open_duration")]
fn new_panics_on_a_config_try_new_refuses() {
    let _ = BreakerRegistry::<String>::new(BreakerConfig::default().open_duration(Duration::ZERO));
}

#[test]
fn concurrent_first_gets_of_one_key_create_one_breaker() {
    let rt = support::paused_runtime();
    for _ in 0..50 {
        let r: BreakerRegistry<String> = BreakerRegistry::new(cfg());
        let barrier = std::sync::Barrier::new(8);
        let got: Vec<Breaker> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let (r, barrier, h) = (&r, &barrier, rt.handle().clone());
                    s.spawn(move || {
                        let _g = h.enter();
                        barrier.wait();
                        r.get("tenant")
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|b| b.ptr_eq(&got[0])));
        assert_eq!(r.len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn idle_breakers_kept_by_housekeeping_keep_their_counts_and_generation() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(3)
            .failure_rate(0.5, 30 * S),
    );
    let b = r.get("t");
    trip(&b); // no trip: 1 of 3
    b.try_acquire().unwrap().record(Outcome::Failure);
    b.reset();
    b.try_acquire().unwrap().record(Outcome::Failure);
    let generation = b.snapshot().generation;
    drop(b);
    advance(31 * S).await; // the window empties
    r.retain_recent(); // compacts the idle breaker
    let snap = r.snapshot().pop().unwrap();
    assert_eq!(
        (snap.consecutive_failures, snap.generation),
        (1, generation)
    );
    let b = r.get("t");
    b.try_acquire().unwrap().record(Outcome::Failure);
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "the count survived compaction"
    );
}

#[tokio::test(start_paused = true)]
async fn debug_output_names_the_registry_and_the_overflow_breaker() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    let _ = r.get("org-46cf");
    let text = format!("{r:?}");
    assert!(text.starts_with("BreakerRegistry"), "{text}");
    let overflow = format!("{:?}", r.overflow());
    assert!(overflow.contains("overflow"), "{overflow}");
}

#[tokio::test(start_paused = true)]
async fn the_overflow_warning_is_logged_once_per_episode() {
    let (subscriber, logs) = support::capture_logs(tracing::Level::WARN);
    let _guard = tracing::subscriber::set_default(subscriber);
    let warnings = || logs.text().matches("breaker registry full").count();
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(2);

    let mut held: Vec<Breaker> = (0..2).map(|k| r.get(&k)).collect();
    for k in 10..13 {
        assert!(r.get(&k).ptr_eq(r.overflow()));
    }
    assert_eq!(warnings(), 1, "one warning for the first episode");

    // Room again: a new key gets its own breaker, which ends the episode.
    drop(held.pop());
    let fresh = r.get(&20);
    assert!(!fresh.ptr_eq(r.overflow()));
    held.push(fresh);
    for k in 30..33 {
        assert!(r.get(&k).ptr_eq(r.overflow()));
    }
    assert_eq!(warnings(), 2, "one more for the second episode");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_evicts_from_other_shards_when_the_home_shard_has_nothing() {
    // 1,024 keys make 4 shards. All breakers are held but one, released at
    // its first use: a new key must find that one wherever it lives. Each
    // round frees a different key, so rounds where it sits outside the new
    // key's shard are all but certain (3 in 4 each).
    for round in 0..16u32 {
        let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(1024);
        let free = round * 61;
        let held: Vec<Breaker> = (0..1024)
            .filter_map(|k| Some(r.get(&k)).filter(|_| k != free))
            .collect();
        let b = r.get(&(5_000 + round));
        assert!(!b.ptr_eq(r.overflow()), "round {round}: room existed");
        assert_eq!(r.len(), 1024);
        drop(held);
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_released_after_long_use_is_found_within_a_bounded_number_of_new_keys() {
    // A handle held long parks its breaker; dropping it tells the registry
    // nothing, so the breaker is looked at again at a bounded rate (16 parked
    // entries of the new key's shard and of one other per new key), never
    // by a scan of the map per key.
    for round in 0..16u32 {
        let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(1024);
        let mut held: Vec<Breaker> = (0..1024).map(|k| r.get(&k)).collect();
        assert!(r.get(&5_000).ptr_eq(r.overflow()), "all held");
        drop(held.swap_remove((round * 61) as usize));
        let tries = (5_001..)
            .take(200)
            .position(|k| !r.get(&k).ptr_eq(r.overflow()));
        assert!(tries.is_some(), "round {round}: never found");
        assert_eq!(r.len(), 1024);
    }
}

/// A config where one failure does not trip: five in a row do.
fn tolerant() -> BreakerConfig {
    BreakerConfig::default()
        .consecutive_failures(5)
        .no_failure_rate()
        .open_duration(30 * S)
}

fn fail(b: &Breaker, times: u32) {
    for _ in 0..times {
        b.try_acquire().expect("closed").record(Outcome::Failure);
    }
}

fn keys_of(r: &BreakerRegistry<u32>) -> Vec<u32> {
    let mut keys: Vec<u32> = r.snapshot().into_iter().map(|s| s.key).collect();
    keys.sort_unstable();
    keys
}

/// Issue 11, defect 3: eviction at the cap took the least recently used idle
/// closed breaker whatever it held, so a breaker one failure from tripping
/// went before a pristine one used later.
#[tokio::test(start_paused = true)]
async fn at_the_cap_pristine_breakers_go_before_ones_holding_failures() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(tolerant()).max_keys(8);
    // The oldest four hold counted failures; the newest four are pristine.
    for k in 0..4 {
        fail(&r.get(&k), 4);
        advance(S).await;
    }
    for k in 4..8 {
        let _ = r.get(&k);
        advance(S).await;
    }
    for k in 100..104 {
        assert!(!r.get(&k).ptr_eq(r.overflow()));
    }
    assert_eq!(keys_of(&r), vec![0, 1, 2, 3, 100, 101, 102, 103]);
    for s in r.snapshot().into_iter().filter(|s| s.key < 4) {
        assert_eq!(s.consecutive_failures, 4, "key {} kept its count", s.key);
    }
}

/// Issue 11, defect 3: a flood of new keys reset tenants one failure from
/// tripping. They now stay until their idle TTL while anything else can go.
#[tokio::test(start_paused = true)]
async fn a_breaker_one_failure_from_tripping_survives_a_flood_until_its_ttl() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(tolerant())
        .max_keys(1024)
        .idle_ttl(600 * S);
    let fragile: Vec<u32> = (0..1024).step_by(64).collect();
    for &k in &fragile {
        fail(&r.get(&k), 4);
    }
    for k in 0..1024 {
        let _ = r.get(&k);
    }
    advance(10 * S).await;
    let mut overflowed = 0;
    for k in 10_000..30_000 {
        overflowed += u32::from(r.get(&k).ptr_eq(r.overflow()));
    }
    assert_eq!(overflowed, 0, "the flood evicted its own idle keys");
    assert_eq!(r.len(), 1024);
    let survivors: Vec<_> = r
        .snapshot()
        .into_iter()
        .filter(|s| s.key < 1024)
        .map(|s| (s.key, s.consecutive_failures))
        .collect();
    let mut kept: Vec<u32> = survivors.iter().map(|&(k, _)| k).collect();
    kept.sort_unstable();
    assert_eq!(kept, fragile, "only the breakers holding failures stayed");
    assert!(survivors.iter().all(|&(_, n)| n == 4));

    // Past their idle TTL they go like any idle closed breaker.
    advance(600 * S).await;
    for k in 30_000..40_000 {
        let _ = r.get(&k);
    }
    assert!(r.snapshot().iter().all(|s| s.key >= 10_000));
}

#[tokio::test(start_paused = true)]
async fn breakers_holding_failures_go_when_nothing_else_can() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(tolerant()).max_keys(4);
    for k in 0..4 {
        fail(&r.get(&k), 1);
        advance(S).await;
    }
    let b = r.get(&100);
    assert!(!b.ptr_eq(r.overflow()), "better than the overflow breaker");
    assert_eq!(r.len(), 4);
    assert!(keys_of(&r).contains(&100));
}

#[tokio::test(start_paused = true)]
async fn open_breakers_survive_a_flood_of_new_keys() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(1024).idle_ttl(S);
    let open: Vec<u32> = (0..1024).step_by(4).collect();
    for k in 0..1024 {
        let b = r.get(&k);
        if k % 4 == 0 {
            trip(&b);
        }
    }
    advance(10 * S).await;
    for k in 10_000..20_000 {
        let _ = r.get(&k);
    }
    let old: Vec<u32> = keys_of(&r).into_iter().filter(|&k| k < 1024).collect();
    assert_eq!(old, open, "open breakers stay, the idle closed ones went");
    assert!(r.get(&0).state() != BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_of_open_breakers_sends_a_flood_to_the_overflow_breaker() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(1024);
    for k in 0..1024 {
        trip(&r.get(&k));
    }
    for k in 10_000..15_000 {
        assert!(r.get(&k).ptr_eq(r.overflow()));
    }
    assert_eq!(r.len(), 1024);
    assert!(keys_of(&r).iter().all(|&k| k < 1024));
}

#[tokio::test(start_paused = true)]
async fn breakers_holding_failures_past_their_ttl_go_before_those_within_it() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(tolerant())
        .max_keys(4)
        .idle_ttl(60 * S);
    for k in 0..4 {
        fail(&r.get(&k), 4);
    }
    advance(61 * S).await;
    // 2 and 3 are used again; 0 and 1 are past their TTL.
    for k in 2..4 {
        let _ = r.get(&k);
    }
    assert_eq!(r.len(), 4, "full");
    for k in 100..102 {
        assert!(!r.get(&k).ptr_eq(r.overflow()));
    }
    assert_eq!(keys_of(&r), vec![2, 3, 100, 101]);
}

#[test]
fn threads_flooding_a_full_registry_keep_the_cap_and_one_breaker_per_key() {
    let rt = support::paused_runtime();
    let _g = rt.enter();
    let r: BreakerRegistry<u32> = BreakerRegistry::new(cfg()).max_keys(512);
    // A quarter of the first keys open: they must all stay.
    for k in 0..512 {
        let b = r.get(&k);
        if k % 4 == 0 {
            trip(&b);
        }
    }
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let (r, h) = (&r, rt.handle().clone());
            s.spawn(move || {
                let _g = h.enter();
                // Overlapping ranges: threads race on the same new keys.
                for k in (1_000 + t * 500)..(4_000 + t * 500) {
                    let _ = r.get(&k);
                }
            });
        }
    });
    assert!(r.len() <= 512);
    let keys = keys_of(&r);
    assert_eq!(keys.len(), r.len(), "len counts every stored key");
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "one breaker per key");
    let open: Vec<u32> = keys.iter().copied().filter(|&k| k < 512).collect();
    assert_eq!(open, (0..512).step_by(4).collect::<Vec<_>>());
}

/// DESIGN.md 0.2: the registry is a cheap handle (`Clone`, `Arc` inside), so
/// the tower layer, the health check and the application share one registry.
#[tokio::test(start_paused = true)]
async fn clones_of_a_registry_share_its_breakers() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(cfg());
    let shared = r.clone();
    assert!(r.get("org-1").ptr_eq(&shared.get("org-1")));
    assert_eq!((r.len(), shared.len()), (1, 1));
    shared.get("org-2");
    assert_eq!(r.len(), 2, "a key added through one handle is seen by all");

    // A builder method on a handle that has been cloned makes a separate
    // registry (holding the same breakers so far); the others keep theirs.
    let separate = shared.clone().max_keys(1);
    assert!(separate.get("org-1").ptr_eq(&r.get("org-1")));
    separate.get("org-3");
    assert_eq!(
        r.len(),
        2,
        "the original did not see the separate registry's key"
    );
}
