//! The sync's two tasks: the writer sends the outbound queue, the reader
//! applies the other replicas' holds. Every wait on Redis is under a
//! timeout; neither task is ever on a call's path.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use safecall::fleet::{HoldKind, RemoteHold, ReplicaId, SyncTarget};
use tokio::time::{Instant, sleep, timeout};

use crate::queue::Pending;
use crate::wire::{self, Kind};
use crate::{Config, Shared, lock};

/// How often an idle task checks that its registry is still there.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Keys whose holds are read per pipeline on a resync.
const RESYNC_CHUNK: usize = 256;
/// Most keys with failure reports tracked at once (hostile traffic aside,
/// only keys open somewhere are tracked).
const MAX_REPORTED_KEYS: usize = 100_000;

/// A multiplexed connection, or `None` (the failure kept for the status).
pub(crate) async fn open(shared: &Shared, limit: Duration) -> Option<MultiplexedConnection> {
    match timeout(limit, shared.client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            shared.failed("connecting", &e);
            None
        }
        Err(_) => {
            shared.failed("connecting", &format_args!("no answer within {limit:?}"));
            None
        }
    }
}

/// A subscription to the namespace's channel, or `None` (the failure kept
/// for the status).
pub(crate) async fn subscribe(shared: &Shared, limit: Duration) -> Option<redis::aio::PubSub> {
    let channel = shared.channel();
    let subscribed = async {
        let mut pubsub = shared.client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        Ok::<_, redis::RedisError>(pubsub)
    };
    match timeout(limit, subscribed).await {
        Ok(Ok(p)) => Some(p),
        Ok(Err(e)) => {
            shared.failed("subscribing", &e);
            None
        }
        Err(_) => {
            shared.failed("subscribing", &format_args!("no answer within {limit:?}"));
            None
        }
    }
}

fn hold_kind(kind: Kind) -> HoldKind {
    match kind {
        Kind::Cool { cut_short } => HoldKind::CoolDown { cut_short },
        Kind::Forced => HoldKind::Forced,
        Kind::Opened | Kind::Closed => HoldKind::Opened,
    }
}

/// Send the queue, one pipeline (`SET … PX`, `PUBLISH`) per entry.
pub(crate) async fn writer(shared: Arc<Shared>, cfg: Config, alive: impl Fn() -> bool) {
    let mut conn = lock(&shared.first).take();
    let mut epoch = shared.epoch.load(Ordering::Acquire);
    // An entry whose first send failed: sent once more, then dropped.
    let mut retried: Option<(String, Kind)> = None;
    loop {
        let next = lock(&shared.queue).pop();
        let Some(p) = next else {
            if !alive() {
                return;
            }
            let _ = timeout(IDLE_CHECK, shared.wake.notified()).await;
            continue;
        };
        let left = p.until.saturating_duration_since(Instant::now());
        if p.kind != Kind::Closed && left.is_zero() {
            continue;
        }
        let now_epoch = shared.epoch.load(Ordering::Acquire);
        if now_epoch != epoch {
            // The reader subscribed again: the store may have restarted
            // under this connection.
            epoch = now_epoch;
            conn = None;
        }
        if conn.is_none() {
            conn = open(&shared, cfg.command_timeout).await;
            shared.writer_up.store(conn.is_some(), Ordering::Relaxed);
        }
        let Some(c) = conn.as_mut() else {
            // The store is away: keep the entry (the queue is bounded) and
            // try again later.
            requeue(&shared, p);
            if !alive() {
                return;
            }
            sleep(cfg.reconnect_delay).await;
            continue;
        };
        let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        let message = wire::encode(shared.replica, p.kind, Duration::from_millis(ms), &p.key);
        let mut pipe = redis::pipe();
        match p.kind {
            Kind::Cool { .. } | Kind::Forced => {
                pipe.cmd("SET")
                    .arg(shared.hold_key(&p.key))
                    .arg(wire::encode_hold(shared.replica, p.kind))
                    .arg("PX")
                    .arg(ms)
                    .ignore();
            }
            Kind::Opened => {
                pipe.cmd("SET")
                    .arg(shared.report_key(&p.key, shared.replica))
                    .arg("1")
                    .arg("PX")
                    .arg(ms)
                    .ignore();
            }
            Kind::Closed => {
                pipe.cmd("DEL")
                    .arg(shared.report_key(&p.key, shared.replica))
                    .ignore();
            }
        }
        pipe.cmd("PUBLISH")
            .arg(shared.channel())
            .arg(message)
            .ignore();
        let sent = timeout(cfg.command_timeout, pipe.query_async::<()>(c)).await;
        let failure = match sent {
            Ok(Ok(())) => {
                shared.writer_up.store(true, Ordering::Relaxed);
                retried = None;
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", cfg.command_timeout),
        };
        shared.failed("sending", &failure);
        conn = None;
        shared.writer_up.store(false, Ordering::Relaxed);
        let id = (p.key.clone(), p.kind);
        if retried.as_ref() == Some(&id) {
            retried = None;
            shared.dropped(1);
        } else {
            retried = Some(id);
            requeue(&shared, p);
        }
    }
}

fn requeue(shared: &Shared, p: Pending) {
    if lock(&shared.queue).push(p) == crate::queue::Pushed::Dropped {
        shared.dropped(1);
    }
}

/// Subscribe, read the holds of the registry's keys, then apply what
/// arrives; on any failure, subscribe again after the reconnect delay.
pub(crate) async fn reader<K>(shared: Arc<Shared>, cfg: Config, target: SyncTarget<K>)
where
    K: Hash + Eq + Clone + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static,
{
    let mut reports = Reports::default();
    let mut resubscribed = false;
    loop {
        if !target.is_attached() {
            return;
        }
        let first = lock(&shared.first_sub).take();
        let pubsub = match first {
            Some(p) => p,
            None => match subscribe(&shared, cfg.command_timeout).await {
                Some(p) => p,
                None => {
                    shared.reader_up.store(false, Ordering::Relaxed);
                    sleep(cfg.reconnect_delay).await;
                    continue;
                }
            },
        };
        if resubscribed {
            shared.epoch.fetch_add(1, Ordering::AcqRel);
        }
        resubscribed = true;
        shared.reader_up.store(true, Ordering::Relaxed);
        shared.recovered();
        // Holds set while this replica was away (or before it started).
        if resync(&shared, cfg, &target).await.is_none() {
            return;
        }
        let mut stream = pubsub.into_on_message();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    if handle(&shared, cfg, &target, &mut reports, msg.get_payload_bytes()).is_none() {
                        return;
                    }
                }
                () = sleep(IDLE_CHECK) => {
                    if !target.is_attached() {
                        return;
                    }
                }
            }
        }
        shared.reader_up.store(false, Ordering::Relaxed);
        shared.failed("subscription", &"connection to Redis lost");
        sleep(cfg.reconnect_delay).await;
    }
}

/// Read the holds of every key the registry has. `None` once the registry
/// is gone.
async fn resync<K>(shared: &Shared, cfg: Config, target: &SyncTarget<K>) -> Option<()>
where
    K: Hash + Eq + Clone + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static,
{
    let keys = target.keys()?;
    if keys.is_empty() {
        return Some(());
    }
    let Some(mut conn) = open(shared, cfg.command_timeout).await else {
        return Some(());
    };
    for chunk in keys.chunks(RESYNC_CHUNK) {
        let mut pipe = redis::pipe();
        for key in chunk {
            let k = shared.hold_key(&key.to_string());
            pipe.cmd("GET").arg(&k).cmd("PTTL").arg(&k);
        }
        let values = match timeout(
            cfg.command_timeout,
            pipe.query_async::<Vec<redis::Value>>(&mut conn),
        )
        .await
        {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                shared.failed("reading holds", &e);
                return Some(());
            }
            Err(_) => return Some(()),
        };
        for (key, pair) in chunk.iter().zip(values.chunks(2)) {
            let [redis::Value::BulkString(value), redis::Value::Int(pttl)] = pair else {
                continue;
            };
            let Some((origin, kind, left)) = wire::decode_hold(value, *pttl) else {
                shared.ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if origin != shared.replica {
                apply(
                    shared,
                    target,
                    key,
                    RemoteHold::new(origin, left, hold_kind(kind)),
                )?;
            }
        }
    }
    Some(())
}

fn apply<K>(shared: &Shared, target: &SyncTarget<K>, key: &K, hold: RemoteHold) -> Option<()>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    let applied = target.apply(key, &hold)?;
    if applied.longer {
        shared.applied.fetch_add(1, Ordering::Relaxed);
    }
    if applied.capped {
        shared.capped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "safecall::fleet",
            origin = %hold.origin,
            asked = ?hold.remaining,
            cap = ?target.max_remote_hold(),
            "remote hold longer than max_remote_hold: capped"
        );
    }
    Some(())
}

/// Failure reports per key: which replicas report it open, until when.
#[derive(Debug, Default)]
struct Reports {
    by_key: HashMap<String, HashMap<ReplicaId, Instant>>,
}

impl Reports {
    /// Record `origin`'s report and return the hold it makes, if enough
    /// replicas (other than `me`) report the key: until the report that
    /// keeps the count at `min` ends.
    fn report(
        &mut self,
        key: &str,
        origin: ReplicaId,
        until: Instant,
        me: ReplicaId,
        min: usize,
    ) -> Option<Duration> {
        let now = Instant::now();
        if !self.by_key.contains_key(key) && self.by_key.len() >= MAX_REPORTED_KEYS {
            self.by_key.retain(|_, r| {
                r.retain(|_, u| *u > now);
                !r.is_empty()
            });
            if self.by_key.len() >= MAX_REPORTED_KEYS {
                return None;
            }
        }
        let r = self.by_key.entry(key.to_owned()).or_default();
        r.insert(origin, until);
        r.retain(|_, u| *u > now);
        // This replica knows its own breaker: it takes no hold it reports.
        if r.len() < min || r.contains_key(&me) {
            return None;
        }
        let mut ends: Vec<Instant> = r.values().copied().collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        ends.get(min - 1).map(|u| u.saturating_duration_since(now))
    }

    fn withdraw(&mut self, key: &str, origin: ReplicaId) {
        if let Some(r) = self.by_key.get_mut(key) {
            r.remove(&origin);
            if r.is_empty() {
                self.by_key.remove(key);
            }
        }
    }
}

/// One message from the channel. `None` once the registry is gone.
fn handle<K>(
    shared: &Shared,
    cfg: Config,
    target: &SyncTarget<K>,
    reports: &mut Reports,
    payload: &[u8],
) -> Option<()>
where
    K: Hash + Eq + Clone + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static,
{
    let ignored = || {
        shared.ignored.fetch_add(1, Ordering::Relaxed);
        Some(())
    };
    let Some(m) = wire::decode(payload) else {
        return ignored();
    };
    let Ok(key) = K::from_str(m.key) else {
        return ignored();
    };
    let mine = m.origin == shared.replica;
    match m.kind {
        Kind::Cool { .. } | Kind::Forced if mine => Some(()),
        Kind::Cool { .. } | Kind::Forced => apply(
            shared,
            target,
            &key,
            RemoteHold::new(m.origin, m.remaining, hold_kind(m.kind)),
        ),
        Kind::Opened => {
            let now = Instant::now();
            let left = m.remaining.min(cfg.max_remote_hold);
            let until = now.checked_add(left).unwrap_or(now);
            match reports.report(m.key, m.origin, until, shared.replica, cfg.min_reporters) {
                Some(hold) if !hold.is_zero() => {
                    if m.remaining > cfg.max_remote_hold {
                        shared.capped.fetch_add(1, Ordering::Relaxed);
                    }
                    apply(
                        shared,
                        target,
                        &key,
                        RemoteHold::new(m.origin, hold, HoldKind::Opened),
                    )
                }
                _ => Some(()),
            }
        }
        Kind::Closed => {
            reports.withdraw(m.key, m.origin);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: ReplicaId = ReplicaId::new(1);
    const A: ReplicaId = ReplicaId::new(2);
    const B: ReplicaId = ReplicaId::new(3);

    #[tokio::test(start_paused = true)]
    async fn a_failure_open_holds_others_only_once_enough_replicas_report_it() {
        let mut r = Reports::default();
        let now = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(r.report("k", A, now + s * 30, ME, 2), None);
        // The same replica again is still one reporter.
        assert_eq!(r.report("k", A, now + s * 30, ME, 2), None);
        assert_eq!(r.report("k", B, now + s * 10, ME, 2), Some(s * 10));
        r.withdraw("k", B);
        assert_eq!(r.report("k", A, now + s * 30, ME, 2), None);
        // A replica that reports the key itself takes no hold.
        r.report("k", ME, now + s * 30, ME, 2);
        assert_eq!(r.report("k", B, now + s * 30, ME, 2), None);
    }
}
