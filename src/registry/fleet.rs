//! The registry's side of a fleet (see [`crate::fleet`]): attaching a state
//! sync, the feed of its breakers' events with the typed key, and the
//! target through which the sync applies remote holds.

use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{BreakerRegistry, State};
use crate::fleet::{Feed, LocalEvent, RemoteHold, StateSync, SyncStatus};
use crate::health::{Check, CheckOutcome};

/// Where a [`StateSync`] applies the other replicas' holds: a weak handle
/// to the registry it was attached to (it does not keep the registry alive;
/// once the registry is dropped, [`apply`](Self::apply) returns `None` and
/// the sync's tasks can end).
pub struct SyncTarget<K> {
    registry: Weak<State<K>>,
    max_remote_hold: Duration,
}

impl<K> Clone for SyncTarget<K> {
    fn clone(&self) -> Self {
        Self {
            registry: Weak::clone(&self.registry),
            max_remote_hold: self.max_remote_hold,
        }
    }
}

impl<K> fmt::Debug for SyncTarget<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncTarget")
            .field("attached", &(self.registry.strong_count() > 0))
            .field("max_remote_hold", &self.max_remote_hold)
            .finish()
    }
}

/// What [`SyncTarget::apply`] did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Applied {
    /// The key's breaker now refuses calls for longer than before.
    pub longer: bool,
    /// The hold was longer than the cap and was cut to it.
    pub capped: bool,
}

impl<K> SyncTarget<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// The cap on a remote hold.
    #[must_use]
    pub fn max_remote_hold(&self) -> Duration {
        self.max_remote_hold
    }

    /// Whether the registry is still there.
    #[must_use]
    pub fn is_attached(&self) -> bool {
        self.registry.strong_count() > 0
    }

    /// Apply another replica's hold to `key`'s breaker, creating it if this
    /// replica has not used the key yet, after capping the hold at
    /// [`max_remote_hold`](Self::max_remote_hold). The hold only adds
    /// caution: it never closes or shortens a local open period or
    /// cool-down. A full registry's overflow breaker is never held (that
    /// would hold every overflowing key). `None` once the registry is gone.
    pub fn apply(&self, key: &K, hold: &RemoteHold) -> Option<Applied> {
        let registry = BreakerRegistry {
            s: self.registry.upgrade()?,
        };
        let capped = hold.remaining > self.max_remote_hold;
        let mut hold = *hold;
        hold.remaining = hold.remaining.min(self.max_remote_hold);
        let breaker = registry.get(key);
        if breaker.ptr_eq(&registry.s.overflow) {
            return Some(Applied {
                longer: false,
                capped,
            });
        }
        Some(Applied {
            longer: breaker.remote_hold(&hold),
            capped,
        })
    }

    /// The keys the registry holds a breaker for (to read their holds again
    /// after a reconnect). `None` once the registry is gone.
    #[must_use]
    pub fn keys(&self) -> Option<Vec<K>> {
        let s = self.registry.upgrade()?;
        let mut out = Vec::with_capacity(s.len.load(std::sync::atomic::Ordering::Relaxed));
        for shard in s.shards.iter() {
            out.extend(super::read(shard).entries().map(|(_, e)| e.key.clone()));
        }
        Some(out)
    }
}

/// # Fleets
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// Share this registry's cool-downs and opens with the other replicas of
    /// a fleet through `sync`, and take theirs (see [`crate::fleet`]).
    ///
    /// Builder style and infallible; needs no runtime (the sync runs its
    /// own tasks). Every breaker of the registry feeds the sync, those
    /// created before this call too (they share the registry's settings);
    /// call it once, right after building the registry (a second sync is
    /// ignored, with a warning).
    ///
    /// ```
    /// use safecall::fleet::StateSync;
    /// use safecall::{BreakerConfig, BreakerRegistry};
    ///
    /// // With Redis: `let sync = safecall_redis::RedisSync::connect(url, "sms").await?;`
    /// fn breakers(sync: impl StateSync<String>) -> BreakerRegistry<String> {
    ///     BreakerRegistry::new(BreakerConfig::default()).sync(sync)
    /// }
    /// ```
    #[must_use]
    pub fn sync(mut self, sync: impl StateSync<K>) -> Self {
        if self.s.fleet.is_some() {
            tracing::warn!(
                target: "safecall::fleet",
                "a state sync is already attached to this registry: the second one is ignored"
            );
            return self;
        }
        let sync: Arc<dyn StateSync<K>> = Arc::new(sync);
        let weak = Arc::downgrade(&sync);
        let feed: Feed = Arc::new(move |key, event: &LocalEvent| {
            if let (Some(key), Some(sync)) = (key.downcast_ref::<K>(), weak.upgrade()) {
                sync.publish(key, event);
            }
        });
        let st = self.state_mut();
        st.fleet = Some(Arc::clone(&sync));
        let mut installed = true;
        for settings in std::iter::once(&st.settings).chain(st.overrides.values()) {
            installed &= settings.feed.set(Arc::clone(&feed)).is_ok();
        }
        if !installed {
            tracing::warn!(
                target: "safecall::fleet",
                "these breaker settings already feed another registry's state sync"
            );
        }
        let target = SyncTarget {
            registry: Arc::downgrade(&self.s),
            max_remote_hold: sync.max_remote_hold(),
        };
        sync.attach(target);
        self
    }

    /// How the attached state sync is doing; `None` without one.
    #[must_use]
    pub fn sync_status(&self) -> Option<SyncStatus> {
        self.s.fleet.as_ref().map(|s| s.status())
    }

    /// A non-critical health check named "state sync": healthy while the
    /// sync is connected and has dropped nothing, degraded otherwise (the
    /// breakers then run locally: nothing fails, the fleet just shares
    /// less). Without a sync it reports "off", healthy.
    pub fn sync_check(&self) -> Check {
        let registry = self.clone();
        Check::non_critical("state sync", move || {
            let status = registry.sync_status();
            async move { Ok(sync_outcome(status)) }
        })
    }
}

fn sync_outcome(status: Option<SyncStatus>) -> CheckOutcome {
    let Some(st) = status else {
        return CheckOutcome::healthy("state sync off: breakers are local to this replica");
    };
    let counts = format!(
        "{} queued, {} dropped, {} remote holds applied ({} capped), {} messages ignored",
        st.queued, st.queue_drops, st.holds_applied, st.holds_capped, st.ignored_messages
    );
    if st.connected && !st.degraded {
        return CheckOutcome::healthy(format!("state sync connected: {counts}"));
    }
    let what = if st.connected {
        "state sync degraded"
    } else {
        "state sync degraded: store unreachable"
    };
    let detail = st.detail.map(|d| format!(" ({d})")).unwrap_or_default();
    CheckOutcome::degraded(format!(
        "{what}{detail}; breakers run locally, nothing fails: {counts}"
    ))
    .recommend(
        "Check the state store (Redis) and the network to it; until it is back, \
         replicas do not share cool-downs or opens.",
    )
}
