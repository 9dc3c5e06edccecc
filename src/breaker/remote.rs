//! A breaker's side of a fleet (see [`crate::fleet`]): what it tells the
//! registry's state sync (its transitions and cool-downs, on the cold paths
//! that already publish them), and the remote holds it takes from it.

use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::state::Change;
use crate::breaker::{Breaker, BreakerMode, BreakerState, TransitionCause};
use crate::fleet::{HoldKind, LocalEvent, RemoteHold};
use crate::sync::lock;

impl Breaker {
    /// Hand a transition to the registry's feed, if a state sync listens.
    /// Called by `emit`, outside the lock; a metrics-only breaker refuses
    /// nothing here, so it shares nothing either.
    pub(super) fn feed_transition(&self, c: &Change) {
        let s = &*self.core().settings;
        let Some(feed) = s.feed.get() else {
            return;
        };
        if s.mode != BreakerMode::Enabled {
            return;
        }
        let event = match (c.to, c.cause) {
            (BreakerState::Open, TransitionCause::Forced) => LocalEvent::ForcedOpen,
            (BreakerState::Open, cause) => LocalEvent::Opened {
                cause,
                open_for: c.open_for.unwrap_or(s.open_duration),
            },
            (BreakerState::Closed, cause) => LocalEvent::Closed { cause },
            _ => return,
        };
        feed(self.0.key.as_any(), &event);
    }

    /// Hand a cool-down of `d` to the registry's feed, if a state sync
    /// listens.
    pub(super) fn feed_cool_down(&self, d: Duration, cut_short: bool) {
        let s = &*self.core().settings;
        if s.mode != BreakerMode::Enabled {
            return;
        }
        if let Some(feed) = s.feed.get() {
            feed(
                self.0.key.as_any(),
                &LocalEvent::CooledDown {
                    remaining: d,
                    cut_short,
                },
            );
        }
    }

    /// Take another replica's hold (already capped by the caller). Returns
    /// whether calls are now refused for longer than before. Never closes or
    /// shortens this breaker's own open period or cool-down, and publishes
    /// nothing (a remote hold is not shared again).
    pub(crate) fn remote_hold(&self, hold: &RemoteHold) -> bool {
        let core = self.core();
        let now = Instant::now();
        let Some(until) = now.checked_add(hold.remaining) else {
            return false;
        };
        let probe_after = match hold.kind {
            HoldKind::CoolDown { cut_short } => cut_short,
            HoldKind::Forced | HoldKind::Opened => true,
        };
        let ext = core.ext(now);
        let (longer, moved) = {
            let mut m = lock(&ext.machine);
            let longer = m.remote_hold(until, hold.origin, probe_after, now);
            (longer, core.publish(ext, &m, now))
        };
        self.count(moved);
        if longer {
            tracing::debug!(
                target: "safecall::fleet",
                key = ?self.0.key.label(),
                origin = %hold.origin,
                remaining = ?hold.remaining,
                kind = ?hold.kind,
                "circuit breaker holding calls on another replica's word"
            );
        }
        longer
    }
}

#[cfg(all(test, not(safecall_loom)))]
mod tests {
    use std::time::Duration;

    use crate::fleet::{HoldKind, RemoteHold, ReplicaId};
    use crate::{Breaker, BreakerConfig, BreakerState, Outcome, RefusalCause};

    const A: ReplicaId = ReplicaId::new(0xa);
    const S: Duration = Duration::from_secs(1);

    fn hold(secs: u64, kind: HoldKind) -> RemoteHold {
        RemoteHold::new(A, S * secs as u32, kind)
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_cool_down_refuses_naming_its_origin_then_lets_calls_through() {
        let b = Breaker::new(BreakerConfig::default());
        assert!(b.remote_hold(&hold(10, HoldKind::CoolDown { cut_short: false })));
        let refused = b.try_acquire().unwrap_err();
        assert_eq!(refused.cause(), RefusalCause::RemoteHold { origin: A });
        assert_eq!(refused.retry_in(), S * 10);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(S * 10).await;
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().record(Outcome::Success);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_open_hold_ends_in_a_local_probe() {
        let b = Breaker::new(BreakerConfig::default());
        b.remote_hold(&hold(5, HoldKind::Opened));
        tokio::time::advance(S * 5).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().unwrap();
        assert_eq!(
            b.try_acquire().unwrap_err().cause(),
            RefusalCause::ProbesBusy
        );
        probe.record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_hold_never_shortens_a_local_open() {
        let b = Breaker::new(
            BreakerConfig::default()
                .consecutive_failures(1)
                .open_duration(S * 30),
        );
        b.try_acquire().unwrap().record(Outcome::Failure);
        assert!(b.remote_hold(&hold(5, HoldKind::Opened)));
        let refused = b.try_acquire().unwrap_err();
        assert_eq!(refused.cause(), RefusalCause::Open);
        assert_eq!(refused.retry_in(), S * 30);
        tokio::time::advance(S * 6).await;
        assert_eq!(b.try_acquire().unwrap_err().retry_in(), S * 24);
        // A longer hold extends the refusal past the local open period.
        b.remote_hold(&hold(60, HoldKind::Opened));
        tokio::time::advance(S * 24).await;
        let refused = b.try_acquire().unwrap_err();
        assert_eq!(refused.cause(), RefusalCause::RemoteHold { origin: A });
        assert_eq!(refused.retry_in(), S * 36);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_remote_hold_does_not_shorten_a_longer_one_or_a_cool_down() {
        let b = Breaker::new(BreakerConfig::default());
        b.try_acquire().unwrap().record(Outcome::RetryAfter(S * 20));
        b.remote_hold(&hold(5, HoldKind::CoolDown { cut_short: false }));
        let refused = b.try_acquire().unwrap_err();
        assert_eq!(refused.cause(), RefusalCause::CoolingDown);
        assert_eq!(refused.retry_in(), S * 20);
        b.remote_hold(&hold(40, HoldKind::Forced));
        assert!(!b.remote_hold(&hold(10, HoldKind::Forced)));
        tokio::time::advance(S * 20).await;
        assert_eq!(b.try_acquire().unwrap_err().retry_in(), S * 20);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_clears_a_remote_hold_and_force_open_beats_it() {
        let b = Breaker::new(BreakerConfig::default());
        b.remote_hold(&hold(60, HoldKind::Forced));
        b.force_open();
        assert_eq!(
            b.try_acquire().unwrap_err().cause(),
            RefusalCause::ForcedOpen
        );
        b.reset();
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().record(Outcome::Success);
    }
}
