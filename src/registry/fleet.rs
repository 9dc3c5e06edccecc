//! The registry's side of a fleet (see [`crate::fleet`]): attaching a state
//! sync, the feed of its breakers' events with the typed key, and the
//! target through which the sync applies remote holds.

use std::fmt;
use std::hash::Hash;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use super::{BreakerRegistry, State, read, write};
use crate::fleet::{Feed, LocalEvent, RemoteHold, StateSync, SyncStatus};
use crate::health::{Check, CheckOutcome};

/// Where a sync's target finds the registry's state: a builder method may
/// move the state (see [`StateMut`]), and points this at where it landed.
pub(crate) type Cell<K> = Arc<RwLock<Weak<State<K>>>>;

/// The registry's state for a builder method (`Arc::make_mut`: in place, or
/// a copy if other handles share it). Dropping it points an attached sync's
/// target at the state, wherever it now is: a builder method called after
/// [`BreakerRegistry::sync`] keeps the sync attached.
pub(crate) struct StateMut<'a, K> {
    registry: &'a mut BreakerRegistry<K>,
}

impl<'a, K: Clone> StateMut<'a, K> {
    pub(super) fn new(registry: &'a mut BreakerRegistry<K>) -> Self {
        Self { registry }
    }
}

impl<K> Deref for StateMut<'_, K> {
    type Target = State<K>;

    fn deref(&self) -> &State<K> {
        &self.registry.s
    }
}

impl<K: Clone> DerefMut for StateMut<'_, K> {
    fn deref_mut(&mut self) -> &mut State<K> {
        Arc::make_mut(&mut self.registry.s)
    }
}

impl<K> Drop for StateMut<'_, K> {
    fn drop(&mut self) {
        if let Some(cell) = &self.registry.s.fleet_cell {
            *write(cell) = Arc::downgrade(&self.registry.s);
        }
    }
}

/// Where a [`StateSync`] applies the other replicas' holds: a weak handle
/// to the registry it was attached to (it does not keep the registry alive;
/// once the registry is dropped, [`apply`](Self::apply) returns `None` and
/// the sync's tasks can end).
pub struct SyncTarget<K> {
    registry: Cell<K>,
    max_remote_hold: Duration,
}

impl<K> Clone for SyncTarget<K> {
    fn clone(&self) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
            max_remote_hold: self.max_remote_hold,
        }
    }
}

impl<K> SyncTarget<K> {
    fn state(&self) -> Option<Arc<State<K>>> {
        read(&self.registry).upgrade()
    }
}

impl<K> fmt::Debug for SyncTarget<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncTarget")
            .field("attached", &self.state().is_some())
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
        read(&self.registry).strong_count() > 0
    }

    /// Apply another replica's hold to `key`'s breaker, creating it if this
    /// replica has not used the key yet, after capping the hold at
    /// [`max_remote_hold`](Self::max_remote_hold). The hold only adds
    /// caution: it never closes or shortens a local open period or
    /// cool-down. A full registry's overflow breaker is never held (that
    /// would hold every overflowing key). `None` once the registry is gone.
    pub fn apply(&self, key: &K, hold: &RemoteHold) -> Option<Applied> {
        let registry = BreakerRegistry { s: self.state()? };
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
        let s = self.state()?;
        let mut out = Vec::with_capacity(s.len.load(std::sync::atomic::Ordering::Relaxed));
        for shard in s.shards.iter() {
            out.extend(
                super::read(shard)
                    .entries()
                    .filter_map(|(_, b)| super::key_of::<K>(b).cloned()),
            );
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
    /// created before this call too (they share the registry's settings),
    /// and builder methods called after it keep the sync attached. Attach
    /// one sync per registry (a second is ignored, with a warning), and
    /// set [`with_key_config`](Self::with_key_config) overrides before it:
    /// an override added later does not feed the sync.
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
        let cell: Cell<K> = Arc::new(RwLock::new(Weak::new()));
        let mut st = self.state_mut();
        st.fleet = Some(Arc::clone(&sync));
        st.fleet_cell = Some(Arc::clone(&cell));
        let mut installed = true;
        for settings in std::iter::once(&st.settings).chain(st.overrides.values()) {
            installed &= settings.feed.set(Arc::clone(&feed)).is_ok();
        }
        drop(st);
        if !installed {
            tracing::warn!(
                target: "safecall::fleet",
                "these breaker settings already feed another registry's state sync"
            );
        }
        let target = SyncTarget {
            registry: cell,
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
