//! The outbound queue: bounded, one entry per key and slot (a later event
//! for a key replaces the one still waiting), so a burst of transitions for
//! one key costs one send, and a store that is away costs bounded memory.

use std::collections::{HashMap, VecDeque};

use tokio::time::Instant;

use crate::wire::Kind;

/// What an entry is about: a hold (a cool-down or a forced open) or a
/// failure report (opened, closed). A key has at most one of each waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    Hold,
    Report,
}

impl Slot {
    pub(crate) fn of(kind: Kind) -> Self {
        match kind {
            Kind::Cool { .. } | Kind::Forced => Slot::Hold,
            Kind::Opened | Kind::Closed => Slot::Report,
        }
    }
}

/// An event waiting to be sent: it ends at `until` (tokio's clock), so the
/// time left is computed when it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) kind: Kind,
    pub(crate) until: Instant,
    pub(crate) key: String,
}

/// What [`Queue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    Coalesced,
    /// The queue was full: the event was dropped.
    Dropped,
}

#[derive(Debug)]
pub(crate) struct Queue {
    waiting: HashMap<(Slot, String), Pending>,
    order: VecDeque<(Slot, String)>,
    capacity: usize,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn push(&mut self, p: Pending) -> Pushed {
        let slot = Slot::of(p.kind);
        let id = (slot, p.key.clone());
        if let Some(old) = self.waiting.get_mut(&id) {
            // A hold keeps the later end; a report, the latest word.
            if slot == Slot::Report || p.until >= old.until {
                *old = p;
            }
            return Pushed::Coalesced;
        }
        if self.waiting.len() >= self.capacity {
            return Pushed::Dropped;
        }
        self.waiting.insert(id.clone(), p);
        self.order.push_back(id);
        Pushed::Queued
    }

    pub(crate) fn pop(&mut self) -> Option<Pending> {
        while let Some(id) = self.order.pop_front() {
            if let Some(p) = self.waiting.remove(&id) {
                return Some(p);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn p(kind: Kind, secs: u64, key: &str) -> Pending {
        Pending {
            kind,
            until: Instant::now() + Duration::from_secs(secs),
            key: key.to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn coalesces_per_key_and_slot_and_stays_bounded() {
        let mut q = Queue::new(2);
        let cool = Kind::Cool { cut_short: false };
        assert_eq!(q.push(p(cool, 10, "a")), Pushed::Queued);
        assert_eq!(q.push(p(cool, 5, "a")), Pushed::Coalesced);
        assert_eq!(q.push(p(Kind::Opened, 5, "a")), Pushed::Queued);
        assert_eq!(q.push(p(Kind::Closed, 0, "a")), Pushed::Coalesced);
        assert_eq!(q.push(p(cool, 1, "b")), Pushed::Dropped);
        assert_eq!(q.len(), 2);
        let first = q.pop().unwrap();
        assert_eq!((first.kind, first.key.as_str()), (cool, "a"));
        assert_eq!(first.until, Instant::now() + Duration::from_secs(10));
        assert_eq!(q.pop().unwrap().kind, Kind::Closed);
        assert_eq!(q.pop(), None);
    }
}
