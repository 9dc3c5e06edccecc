//! Property test: random sequences of acquisitions, outcomes, cancellations,
//! resets and clock advances, checked step by step against a small reference
//! model of the breaker.
//!
//! Checked after every step: admission and refusal (with `retry_in`) match the
//! model, so no call is admitted while open before its time; probes in flight
//! never exceed `half_open_probes`; the state and the consecutive-failure
//! count match; and once every permit is gone no probe slot is still taken.

use std::time::Duration;

use proptest::prelude::*;
use safecall::{Breaker, BreakerConfig, BreakerState, Outcome, Permit};
use tokio::time::Instant;

const OPEN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Record(usize, u8),
    Drop(usize),
    Advance(u64),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        4 => (any::<usize>(), 0u8..3).prop_map(|(i, o)| Op::Record(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        3 => (0u64..15_000).prop_map(Op::Advance),
        1 => Just(Op::Reset),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ticket {
    Plain { generation: u32 },
    Probe { generation: u32, id: u32 },
}

/// The reference: a direct transcription of DESIGN.md's rules.
#[derive(Debug)]
struct Model {
    threshold: u32,
    probes_max: usize,
    to_close: u32,
    lease: Duration,
    state: BreakerState,
    generation: u32,
    open_until: Instant,
    consecutive: u32,
    probes: Vec<(u32, Instant)>,
    next_id: u32,
    successes: u32,
}

impl Model {
    fn state_at(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open if now >= self.open_until => BreakerState::HalfOpen,
            s => s,
        }
    }

    fn transition(&mut self, to: BreakerState, now: Instant) {
        self.state = to;
        self.generation += 1;
        self.probes.clear();
        self.successes = 0;
        if to == BreakerState::Open {
            self.open_until = now + OPEN;
        }
        if to == BreakerState::Closed {
            self.consecutive = 0;
        }
    }

    fn acquire(&mut self, now: Instant) -> Result<Ticket, Duration> {
        match self.state {
            BreakerState::Closed => Ok(Ticket::Plain {
                generation: self.generation,
            }),
            BreakerState::Open if now < self.open_until => Err(self.open_until - now),
            BreakerState::Open | BreakerState::HalfOpen => {
                if self.state == BreakerState::Open {
                    self.transition(BreakerState::HalfOpen, now);
                }
                self.probes.retain(|(_, until)| *until > now);
                if self.probes.len() >= self.probes_max {
                    let wait = self.probes.iter().map(|(_, u)| *u - now).min().unwrap();
                    return Err(wait);
                }
                let id = self.next_id;
                self.next_id += 1;
                self.probes.push((id, now + self.lease));
                Ok(Ticket::Probe {
                    generation: self.generation,
                    id,
                })
            }
        }
    }

    /// `outcome`: 0 success, 1 failure, 2 ignored, 3 dropped.
    fn finish(&mut self, t: Ticket, outcome: u8, now: Instant) {
        match t {
            // An outcome of an earlier generation adds nothing to the
            // current one: it neither counts nor ends a streak.
            Ticket::Plain { generation }
                if self.state != BreakerState::Closed || generation != self.generation => {}
            Ticket::Plain { .. } => match outcome {
                0 => self.consecutive = 0,
                1 => {
                    self.consecutive += 1;
                    if self.consecutive >= self.threshold {
                        self.transition(BreakerState::Open, now);
                    }
                }
                _ => {}
            },
            Ticket::Probe { generation, id } => {
                match outcome {
                    0 => self.consecutive = 0,
                    1 => self.consecutive += 1,
                    _ => {}
                }
                if self.state != BreakerState::HalfOpen || generation != self.generation {
                    return;
                }
                let Some(pos) = self.probes.iter().position(|(p, _)| *p == id) else {
                    return;
                };
                let (_, until) = self.probes.swap_remove(pos);
                if until <= now {
                    return; // lease ran out: stale
                }
                match outcome {
                    0 => {
                        self.successes += 1;
                        if self.successes >= self.to_close {
                            self.transition(BreakerState::Closed, now);
                        }
                    }
                    1 => self.transition(BreakerState::Open, now),
                    _ => {}
                }
            }
        }
    }
}

fn outcome(o: u8) -> Outcome {
    match o {
        0 => Outcome::Success,
        1 => Outcome::Failure,
        _ => Outcome::Ignored,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_reference_model(
        threshold in 1u32..4,
        probes_max in 1u32..4,
        to_close in 1u32..4,
        lease_s in 1u64..20,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let lease = Duration::from_secs(lease_s);
            let b = Breaker::new(
                BreakerConfig::default()
                    .consecutive_failures(threshold)
                    .no_failure_rate()
                    .open_duration(OPEN)
                    .half_open_probes(probes_max)
                    .successes_to_close(to_close)
                    .probe_lease(lease),
            );
            let mut m = Model {
                threshold,
                probes_max: probes_max as usize,
                to_close,
                lease,
                state: BreakerState::Closed,
                generation: 0,
                open_until: Instant::now(),
                consecutive: 0,
                probes: Vec::new(),
                next_id: 0,
                successes: 0,
            };
            let mut held: Vec<(Permit<'_>, Ticket)> = Vec::new();
            for op in ops {
                let now = Instant::now();
                match op {
                    Op::Acquire => match (b.try_acquire(), m.acquire(now)) {
                        (Ok(p), Ok(t)) => {
                            prop_assert_eq!(p.is_probe(), matches!(t, Ticket::Probe { .. }));
                            held.push((p, t));
                        }
                        (Err(r), Err(wait)) => prop_assert_eq!(r.retry_in(), wait),
                        (got, want) => prop_assert!(false, "admission differs: got {:?}, model {:?}", got.map(|p| p.is_probe()), want),
                    },
                    Op::Record(i, o) if !held.is_empty() => {
                        let (p, t) = held.swap_remove(i % held.len());
                        p.record(outcome(o));
                        m.finish(t, o, now);
                    }
                    Op::Drop(i) if !held.is_empty() => {
                        let (p, t) = held.swap_remove(i % held.len());
                        drop(p);
                        m.finish(t, 3, now);
                    }
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    Op::Reset => {
                        b.reset();
                        m.transition(BreakerState::Closed, now);
                    }
                    _ => {}
                }
                let now = Instant::now();
                let snap = b.snapshot();
                prop_assert_eq!(snap.state, m.state_at(now));
                prop_assert_eq!(snap.consecutive_failures, m.consecutive);
                prop_assert!(snap.probes_in_flight <= probes_max);
                let live = held.iter().filter(|(p, _)| p.is_probe()).count() as u32;
                prop_assert!(snap.probes_in_flight <= live, "a slot is held by no permit");
            }
            drop(held);
            prop_assert_eq!(b.snapshot().probes_in_flight, 0, "no slot leaked");
            if b.state() == BreakerState::HalfOpen {
                prop_assert!(b.try_acquire().is_ok());
            }
            Ok(())
        })?;
    }
}
