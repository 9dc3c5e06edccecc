//! Metrics (feature `metrics`): calls, retries and breakers, through the
//! [`metrics`](https://docs.rs/metrics) crate's facade, so the service picks the
//! exporter (Prometheus, OpenTelemetry, StatsD...).
//!
//! # Why bounded labels
//!
//! A breaker that opens at 3 a.m. is invisible without metrics, but a metric
//! labelled by tenant is a series per tenant: a million tenants blow up
//! Prometheus and pass OpenTelemetry's cap of 2,000 attribute sets per
//! instrument long before that. So every label here takes a bounded set of
//! values by construction: the names you give policies and registries, and
//! fixed words. **No label carries a tenant key** unless you map keys to a
//! few labels yourself ([`BreakerRegistry::metrics_label`]). Per-tenant detail
//! lives in [`BreakerRegistry::snapshot`], the health report and `tracing`.
//!
//! # The instruments
//!
//! | name | kind | labels |
//! | --- | --- | --- |
//! | `safecall.call.duration` | histogram, seconds | `policy`, `outcome` |
//! | `safecall.call.attempts` | histogram, invocations of the operation | `policy`, `outcome` |
//! | `safecall.events` | counter | `policy`, `event` (and `tenant` for a registry with [`metrics_label`](crate::BreakerRegistry::metrics_label)) |
//! | `safecall.breakers` | gauge, a count of keys | `registry`, `state` (and `tenant`, likewise) |
//!
//! `policy` is [`SafeCallBuilder::name`], `registry` is
//! [`BreakerRegistry::name`]; both default to `"default"`.
//!
//! **`outcome`**, one per call, when it resolves (a call dropped before it
//! resolves records nothing). The duration runs from the call's first poll
//! to its end, waits included; the attempts are the operation's invocations
//! (0 for a call refused before its first attempt):
//!
//! | the call ends with | `outcome` |
//! | --- | --- |
//! | `Ok(value)` | `ok` |
//! | [`Error::Permanent`] | `permanent` |
//! | [`Error::Exhausted`] with [`ExhaustedReason::BudgetEmpty`] | `budget_empty` |
//! | [`Error::Exhausted`], any other reason | `exhausted` |
//! | [`Error::Timeout`] (the deadline, or the last attempt's timeout) | `timeout` |
//! | [`Error::CircuitOpen`] | `circuit_open` |
//! | [`Error::BulkheadFull`] | `bulkhead_full` |
//!
//! A value that [`Call::classify_ok`](crate::Call::classify_ok) classified as a
//! failure, returned as `Ok(last value)` because no attempt was left, is
//! labelled as the error would have been: `exhausted` (or `budget_empty`), and
//! `permanent` when its class is not retried. The caller got an answer, but
//! not a good one: a dashboard of call outcomes must show the provider's
//! 503s, not count them as successes.
//!
//! **`event`**, counted where it happens:
//!
//! | event | counted | `policy` label |
//! | --- | --- | --- |
//! | `retry` | each time a call waits for another attempt | the policy's name |
//! | `give_up` | a retryable failure with no attempt left (every `exhausted` and `budget_empty` outcome, and a `timeout` of the last allowed attempt) | the policy's name |
//! | `rejected` | a call ended by its breaker (every `circuit_open` outcome) | the policy's name |
//! | `circuit_opened`, `circuit_half_opened`, `circuit_closed` | a breaker's transition to that state (forced opens and resets included; in [`BreakerMode::MetricsOnly`](crate::BreakerMode::MetricsOnly), what would have happened) | the breaker's **registry** name |
//! | `cooled_down` | a breaker starting (or extending) a cool-down on a server's retry-after hint | the breaker's registry name |
//! | `bulkhead_rejected` | a call ended by a full bulkhead (every `bulkhead_full` outcome) | the policy's name |
//! | `fallback` | a [fallback](crate::Call::fallback) served a stand-in value (the call's own outcome is still recorded: `circuit_open`, say) | the policy's name |
//! | `hedge_sent` | a [hedged](crate::Call::hedge) call started a backup attempt beside one in flight | the policy's name |
//! | `hedge_won` | a backup attempt answered first and served the call (`hedge_won / hedge_sent` says whether hedges help) | the policy's name |
//!
//! A breaker serves every policy that calls through it, so its transitions
//! are counted once, under its registry's name in the `policy` label (a
//! standalone [`Breaker`](crate::Breaker) counts under `"default"`), rather
//! than once per policy. Name registries and policies apart (`"twilio"`,
//! `"twilio-orgs"`) to tell them apart.
//!
//! **`state`** of `safecall.breakers`: each key of a registry is counted in
//! exactly one of `forced_open` (by hand), else `cooling_down` (a server's
//! retry-after hint holds calls back), else `open`, `half_open` or `closed`,
//! the state [`Breaker::state`](crate::Breaker::state) reports. The registry's
//! overflow breaker is not a key and is not counted. The counts are kept on
//! every change (a call, a probe, a hint, `force_open`, `reset`, a new key,
//! an eviction), never by scanning the registry, so a scrape costs the same at
//! a million tenants as at ten. Two changes happen by the clock alone, with
//! no call to notice them: an open period that passes (`open` →
//! `half_open`) and a cool-down that ends. The gauge shows them at the key's
//! next call, or at the next [`BreakerRegistry::snapshot`], which looks at
//! every key anyway and sets them right: right after a snapshot the gauge
//! equals the snapshot's counts. A health endpoint that snapshots the registry
//! (as [`BreakerCheck`](crate::health::BreakerCheck) does) keeps it current.
//! Changes racing on several threads may set it out of order for a moment;
//! each sets it again until it holds the count, so it is exact once they
//! stop.
//!
//! # Installing the recorder
//!
//! Recording a call is a few atomic increments on handles registered
//! beforehand, with no allocation and no lookup by label: a policy registers
//! every series it can record (each outcome's histograms, each call event's
//! counter) when it is built, with the recorder in force then; a registry
//! registers its gauge's states and its events at its first key. Series
//! registered up front also show zeros before the first failure, so a
//! dashboard's `rate()` works from the start.
//!
//! Install the exporter's recorder at start-up, before building policies. A
//! policy built before (bound to the no-op recorder) registers again with the
//! first other recorder it meets, at that call: each policy and registry
//! keeps handles for two recorders. A third recorder still gets every value,
//! at the cost of registering the handles at each use. Recorders are told
//! apart by address, so a policy kept across two local recorders that live at
//! the same address one after the other (one dropped, the next made in its
//! place) keeps recording into the first: in tests, build the policy with
//! the recorder, or keep the recorders alive side by side.
//!
//! A policy used under a local recorder ([`metrics::with_local_recorder`],
//! thread-local) records there: a test can install a debugging recorder
//! around its calls on a current-thread runtime, as below. (The debugging
//! recorder's snapshot resets counters and gauges: take one at the end.)
//!
//! # Cost
//!
//! Without the feature nothing is compiled in: a call runs the same
//! instructions as before. With it, a call reads the clock twice more (at
//! its start, unless a deadline or an attempt timeout already does, and at
//! its end: about 20 ns each on the machine of `bench/results/metrics.md`),
//! looks up the recorder in force (a thread-local and an atomic load) and
//! records two histogram values and its events; the exporter's own recording
//! comes on top. Nothing is allocated per call by safecall. A policy on a
//! path too hot to measure takes
//! [`SafeCallBuilder::metrics(false)`](crate::SafeCallBuilder::metrics): one
//! branch per call.
//!
//! # Examples
//!
//! ```
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use safecall::SafeCall;
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! metrics::with_local_recorder(&recorder, || {
//!     let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
//!     rt.block_on(async {
//!         let policy: SafeCall<std::io::Error> = SafeCall::builder().name("twilio").build().unwrap();
//!         policy.call(|| async { Ok::<_, std::io::Error>(()) }).await.unwrap();
//!     });
//! });
//! let calls = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
//!     match value {
//!         DebugValue::Histogram(samples)
//!             if key.key().name() == safecall::metrics::CALL_ATTEMPTS
//!                 && labels == [("policy", "twilio"), ("outcome", "ok")] => Some(samples.len()),
//!         _ => None,
//!     }
//! });
//! assert_eq!(calls, Some(1));
//! ```
//!
//! [`BreakerRegistry::metrics_label`]: crate::BreakerRegistry::metrics_label
//! [`BreakerRegistry::snapshot`]: crate::BreakerRegistry::snapshot
//! [`BreakerRegistry::name`]: crate::BreakerRegistry::name
//! [`BreakerRegistry`]: crate::BreakerRegistry
//! [`SafeCallBuilder::name`]: crate::SafeCallBuilder::name
//! [`Error::Permanent`]: crate::Error::Permanent
//! [`Error::Exhausted`]: crate::Error::Exhausted
//! [`Error::Timeout`]: crate::Error::Timeout
//! [`Error::CircuitOpen`]: crate::Error::CircuitOpen
//! [`Error::BulkheadFull`]: crate::Error::BulkheadFull
//! [`ExhaustedReason::BudgetEmpty`]: crate::ExhaustedReason::BudgetEmpty

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Label, Recorder};

/// The histogram of call durations, in seconds.
pub const CALL_DURATION: &str = "safecall.call.duration";
/// The histogram of attempts per call (invocations of the operation).
pub const CALL_ATTEMPTS: &str = "safecall.call.attempts";
/// The counter of events.
pub const EVENTS: &str = "safecall.events";
/// The gauge of a registry's keys by breaker state.
pub const BREAKERS: &str = "safecall.breakers";

/// The label value shared by keys that
/// [`metrics_label`](crate::BreakerRegistry::metrics_label) maps to `None`.
pub const OTHER: &str = "other";

/// How a call ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    Ok,
    Permanent,
    Exhausted,
    Timeout,
    CircuitOpen,
    BudgetEmpty,
    BulkheadFull,
}

impl CallOutcome {
    const COUNT: usize = 7;

    const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Permanent => "permanent",
            CallOutcome::Exhausted => "exhausted",
            CallOutcome::Timeout => "timeout",
            CallOutcome::CircuitOpen => "circuit_open",
            CallOutcome::BudgetEmpty => "budget_empty",
            CallOutcome::BulkheadFull => "bulkhead_full",
        }
    }
}

/// What `safecall.events` counts, as the `event` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Retry,
    GiveUp,
    HedgeSent,
    HedgeWon,
    Fallback,
    CircuitOpened,
    CircuitHalfOpened,
    CircuitClosed,
    Rejected,
    CooledDown,
    BulkheadRejected,
}

impl Event {
    const COUNT: usize = 11;

    const fn as_str(self) -> &'static str {
        match self {
            Event::Retry => "retry",
            Event::GiveUp => "give_up",
            Event::HedgeSent => "hedge_sent",
            Event::HedgeWon => "hedge_won",
            Event::Fallback => "fallback",
            Event::CircuitOpened => "circuit_opened",
            Event::CircuitHalfOpened => "circuit_half_opened",
            Event::CircuitClosed => "circuit_closed",
            Event::Rejected => "rejected",
            Event::CooledDown => "cooled_down",
            Event::BulkheadRejected => "bulkhead_rejected",
        }
    }
}

/// The state a key is counted in by `safecall.breakers`. Kept in three bits
/// of the breaker's state word (closed is 0, so a closed breaker's word is
/// unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum KeyState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    ForcedOpen = 3,
    CoolingDown = 4,
}

impl KeyState {
    const COUNT: usize = 5;

    pub(crate) const fn bits(self) -> u64 {
        self as u64
    }

    pub(crate) const fn from_bits(bits: u64) -> Self {
        match bits {
            1 => KeyState::Open,
            2 => KeyState::HalfOpen,
            3 => KeyState::ForcedOpen,
            4 => KeyState::CoolingDown,
            _ => KeyState::Closed,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            KeyState::Closed => "closed",
            KeyState::Open => "open",
            KeyState::HalfOpen => "half_open",
            KeyState::ForcedOpen => "forced_open",
            KeyState::CoolingDown => "cooling_down",
        }
    }
}

/// The recorder in force on this thread (a local one, else the global one,
/// else the no-op one), by address.
#[inline]
fn recorder_id() -> usize {
    ::metrics::with_recorder(|r| (r as *const dyn Recorder).cast::<()>().addr())
}

/// Handles registered with up to two recorders, a whole set at once when a
/// recorder is first met (or, for a policy, when it is built). A policy
/// built or first used before the service installed its recorder (bound to
/// the no-op one) takes the real one in the second set.
struct Bound<S> {
    sets: [OnceLock<(usize, S)>; 2],
}

impl<S> Bound<S> {
    fn new() -> Self {
        Self {
            sets: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// Binds the first set to the recorder in force now.
    fn bind_now(&self, register: impl FnOnce() -> S) {
        let id = recorder_id();
        let _ = self.sets[0].get_or_init(|| (id, register()));
    }

    /// Runs `f` with the handles registered with the recorder in force,
    /// registering them if this recorder is new; when both sets are taken
    /// by other recorders, with handles registered for this use only.
    #[inline]
    fn with<R>(&self, register: impl Fn() -> S, f: impl FnOnce(&S) -> R) -> R {
        let id = recorder_id();
        for set in &self.sets {
            let (bound, s) = set.get_or_init(|| (id, register()));
            if *bound == id {
                return f(s);
            }
        }
        f(&register())
    }
}

fn labels(pairs: &[(&'static str, &'static str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|&(k, v)| Label::from_static_parts(k, v))
        .collect()
}

/// The outcomes a call can end with.
const OUTCOMES: [CallOutcome; CallOutcome::COUNT] = [
    CallOutcome::Ok,
    CallOutcome::Permanent,
    CallOutcome::Exhausted,
    CallOutcome::Timeout,
    CallOutcome::CircuitOpen,
    CallOutcome::BudgetEmpty,
    CallOutcome::BulkheadFull,
];

/// The events a call counts.
const CALL_EVENTS: [Event; 7] = [
    Event::Retry,
    Event::GiveUp,
    Event::HedgeSent,
    Event::HedgeWon,
    Event::Rejected,
    Event::BulkheadRejected,
    Event::Fallback,
];

/// The events a breaker counts.
const BREAKER_EVENTS: [Event; 4] = [
    Event::CircuitOpened,
    Event::CircuitHalfOpened,
    Event::CircuitClosed,
    Event::CooledDown,
];

/// A policy's handles with one recorder: every series it can record,
/// registered together (so a scrape shows zeros before the first failure,
/// and `rate()` works from the start).
struct PolicyHandles {
    duration: [Histogram; CallOutcome::COUNT],
    attempts: [Histogram; CallOutcome::COUNT],
    events: [Counter; Event::COUNT],
}

/// Describes the instruments to the recorder in force (units, help text).
fn describe() {
    ::metrics::describe_histogram!(
        CALL_DURATION,
        ::metrics::Unit::Seconds,
        "Time from a call's start to its end, waits included, by policy and outcome"
    );
    ::metrics::describe_histogram!(
        CALL_ATTEMPTS,
        ::metrics::Unit::Count,
        "Invocations of the operation per call, by policy and outcome"
    );
    ::metrics::describe_counter!(
        EVENTS,
        ::metrics::Unit::Count,
        "Retries, give-ups and refusals per policy; breaker transitions and cool-downs per registry"
    );
    ::metrics::describe_gauge!(
        BREAKERS,
        ::metrics::Unit::Count,
        "Keys of a breaker registry in each state"
    );
}

impl PolicyHandles {
    fn register(name: &'static str) -> Self {
        describe();
        let mut h = Self {
            duration: std::array::from_fn(|_| Histogram::noop()),
            attempts: std::array::from_fn(|_| Histogram::noop()),
            events: std::array::from_fn(|_| Counter::noop()),
        };
        for outcome in OUTCOMES {
            let pairs = [("policy", name), ("outcome", outcome.as_str())];
            h.duration[outcome as usize] = ::metrics::histogram!(CALL_DURATION, labels(&pairs));
            h.attempts[outcome as usize] = ::metrics::histogram!(CALL_ATTEMPTS, labels(&pairs));
        }
        for event in CALL_EVENTS {
            let pairs = [("policy", name), ("event", event.as_str())];
            h.events[event as usize] = ::metrics::counter!(EVENTS, labels(&pairs));
        }
        h
    }
}

/// The metrics of one policy: its name and its handles.
pub(crate) struct PolicyMetrics {
    name: &'static str,
    handles: Bound<PolicyHandles>,
}

impl fmt::Debug for PolicyMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyMetrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PolicyMetrics {
    /// A policy's metrics, registered now with the recorder in force.
    pub(crate) fn new(name: &'static str) -> Self {
        let handles = Bound::new();
        handles.bind_now(|| PolicyHandles::register(name));
        Self { name, handles }
    }

    /// A call ended with `outcome` after `attempts` invocations, `elapsed`
    /// after it started.
    #[inline]
    pub(crate) fn call_ended(&self, outcome: CallOutcome, attempts: u32, elapsed: Duration) {
        let name = self.name;
        self.handles.with(
            || PolicyHandles::register(name),
            |h| {
                let i = outcome as usize;
                if let (Some(d), Some(a)) = (h.duration.get(i), h.attempts.get(i)) {
                    d.record(elapsed.as_secs_f64());
                    a.record(f64::from(attempts));
                }
            },
        );
    }

    /// The handle of this policy's counter of `event`, with the recorder in
    /// force.
    pub(crate) fn counter(&self, event: Event) -> Counter {
        let name = self.name;
        self.handles.with(
            || PolicyHandles::register(name),
            |h| {
                h.events
                    .get(event as usize)
                    .cloned()
                    .unwrap_or_else(Counter::noop)
            },
        )
    }

    /// Counts `event` for this policy.
    #[inline]
    pub(crate) fn event(&self, event: Event) {
        let name = self.name;
        self.handles.with(
            || PolicyHandles::register(name),
            |h| {
                if let Some(c) = h.events.get(event as usize) {
                    c.increment(1);
                }
            },
        );
    }
}

/// Maps a registry's key (as `&dyn Any`) to its `tenant` label.
type LabelFn = Arc<dyn Fn(&dyn Any) -> Option<&'static str> + Send + Sync>;

/// The keys of one `tenant` label (or of the whole registry, without a
/// mapping): counts per state, and handles.
struct Group {
    tenant: Option<&'static str>,
    counts: [AtomicI64; KeyState::COUNT],
    handles: Bound<GroupHandles>,
}

/// A group's handles with one recorder: the gauge of each state and the
/// counter of each breaker event.
struct GroupHandles {
    gauges: [Gauge; KeyState::COUNT],
    events: [Counter; Event::COUNT],
}

impl Group {
    fn new(tenant: Option<&'static str>) -> Self {
        Self {
            tenant,
            counts: std::array::from_fn(|_| AtomicI64::new(0)),
            handles: Bound::new(),
        }
    }

    fn label_pairs(
        &self,
        first: (&'static str, &'static str),
        second: (&'static str, &'static str),
    ) -> Vec<Label> {
        match self.tenant {
            Some(t) => labels(&[first, second, ("tenant", t)]),
            None => labels(&[first, second]),
        }
    }

    /// Registers the group's handles with the recorder in force, each gauge
    /// set to its count (a recorder installed after keys were made starts
    /// right).
    fn register(&self, name: &'static str) -> GroupHandles {
        describe();
        let mut h = GroupHandles {
            gauges: std::array::from_fn(|_| Gauge::noop()),
            events: std::array::from_fn(|_| Counter::noop()),
        };
        for (state, count) in KEY_STATES.iter().zip(&self.counts) {
            let gauge = ::metrics::gauge!(
                BREAKERS,
                self.label_pairs(("registry", name), ("state", state.as_str()))
            );
            gauge.set(count.load(Ordering::Acquire) as f64);
            h.gauges[*state as usize] = gauge;
        }
        for event in BREAKER_EVENTS {
            h.events[event as usize] = ::metrics::counter!(
                EVENTS,
                self.label_pairs(("policy", name), ("event", event.as_str()))
            );
        }
        h
    }

    fn add(&self, name: &'static str, state: KeyState, delta: i64) {
        let slot = &self.counts[state as usize];
        slot.fetch_add(delta, Ordering::SeqCst);
        // The gauge is set to the count (not moved by the delta), so it
        // cannot drift from it, and set again until the count read after
        // the set is the one set: whichever change sets it last sets the
        // final count, so once changes stop the gauge equals the count,
        // however they raced.
        self.handles.with(
            || self.register(name),
            |h| {
                if let Some(g) = h.gauges.get(state as usize) {
                    let mut value = slot.load(Ordering::SeqCst);
                    loop {
                        g.set(value as f64);
                        let now = slot.load(Ordering::SeqCst);
                        if now == value {
                            break;
                        }
                        value = now;
                    }
                }
            },
        );
    }

    fn event(&self, name: &'static str, event: Event) {
        self.handles.with(
            || self.register(name),
            |h| {
                if let Some(c) = h.events.get(event as usize) {
                    c.increment(1);
                }
            },
        );
    }
}

/// Every state a key can be counted in.
const KEY_STATES: [KeyState; KeyState::COUNT] = [
    KeyState::Closed,
    KeyState::Open,
    KeyState::HalfOpen,
    KeyState::ForcedOpen,
    KeyState::CoolingDown,
];

/// What a registry's builder methods set.
struct Config {
    name: &'static str,
    label: Option<LabelFn>,
}

/// The breaker metrics of a registry (shared by its breakers' settings,
/// per-key overrides included) or of a standalone breaker.
pub(crate) struct BreakerMetrics {
    /// The registry's key type: only breakers keyed by it are counted in
    /// the gauge (not the overflow breaker, not a standalone one).
    key_type: Option<TypeId>,
    config: RwLock<Config>,
    /// Without a mapping: every key.
    all: Group,
    /// With a mapping: one group per label, `other` included.
    tenants: RwLock<Vec<Arc<Group>>>,
}

impl fmt::Debug for BreakerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerMetrics")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BreakerMetrics {
    /// The metrics of a standalone breaker: events only, under `"default"`.
    pub(crate) fn standalone() -> Self {
        Self::with_key_type(None)
    }

    /// The metrics of a registry keyed by `K`.
    pub(crate) fn registry<K: 'static>() -> Self {
        Self::with_key_type(Some(TypeId::of::<K>()))
    }

    fn with_key_type(key_type: Option<TypeId>) -> Self {
        Self {
            key_type,
            config: RwLock::new(Config {
                name: "default",
                label: None,
            }),
            all: Group::new(None),
            tenants: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        read(&self.config).name
    }

    pub(crate) fn set_name(&self, name: &'static str) {
        write(&self.config).name = name;
    }

    /// Map keys to `tenant` labels from now on. Set before the first key:
    /// counts already made stay under the labels they were made with.
    pub(crate) fn set_label<K: 'static>(
        &self,
        f: impl Fn(&K) -> Option<&'static str> + Send + Sync + 'static,
    ) {
        let erased: LabelFn = Arc::new(move |key: &dyn Any| key.downcast_ref::<K>().and_then(&f));
        write(&self.config).label = Some(erased);
    }

    /// Whether `key` is a key of the registry (counted in the gauge).
    fn is_key(&self, key: &dyn Any) -> bool {
        self.key_type == Some(key.type_id())
    }

    /// Runs `f` on the group of `key` with the registry's name.
    fn group_of<R>(&self, key: &dyn Any, f: impl FnOnce(&Group, &'static str) -> R) -> R {
        let (name, label) = {
            let c = read(&self.config);
            (c.name, c.label.clone())
        };
        let Some(label) = label else {
            return f(&self.all, name);
        };
        let tenant = label(key).unwrap_or(OTHER);
        let found = read(&self.tenants)
            .iter()
            .find(|g| g.tenant == Some(tenant))
            .cloned();
        let group = match found {
            Some(g) => g,
            None => {
                let mut groups = write(&self.tenants);
                match groups.iter().find(|g| g.tenant == Some(tenant)) {
                    Some(g) => Arc::clone(g),
                    None => {
                        let g = Arc::new(Group::new(Some(tenant)));
                        groups.push(Arc::clone(&g));
                        g
                    }
                }
            }
        };
        f(&group, name)
    }

    /// A key was added to the registry (closed).
    pub(crate) fn key_added(&self, key: &dyn Any) {
        self.group_of(key, |g, name| g.add(name, KeyState::Closed, 1));
    }

    /// A key counted in `state` left the registry.
    pub(crate) fn key_removed(&self, key: &dyn Any, state: KeyState) {
        self.group_of(key, |g, name| g.add(name, state, -1));
    }

    /// `key`'s breaker moved from `from` to `to`. Ignored for a breaker that
    /// is not a key of the registry.
    pub(crate) fn moved(&self, key: &dyn Any, from: KeyState, to: KeyState) {
        if from == to || !self.is_key(key) {
            return;
        }
        self.group_of(key, |g, name| {
            g.add(name, from, -1);
            g.add(name, to, 1);
        });
    }

    /// Counts a breaker `event` of `key`'s breaker.
    pub(crate) fn event(&self, key: &dyn Any, event: Event) {
        self.group_of(key, |g, name| g.event(name, event));
    }

    /// The keys counted in each state, summed over the `tenant` labels (for
    /// tests).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> [i64; KeyState::COUNT] {
        let mut out = [0; KeyState::COUNT];
        let tenants = read(&self.tenants);
        for g in std::iter::once(&self.all).chain(tenants.iter().map(|g| &**g)) {
            for (o, c) in out.iter_mut().zip(&g.counts) {
                *o += c.load(Ordering::Acquire);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_states_round_trip_through_their_bits() {
        for s in KEY_STATES {
            assert_eq!(KeyState::from_bits(s.bits()), s);
        }
        assert_eq!(
            KeyState::Closed.bits(),
            0,
            "a closed breaker's word is unchanged"
        );
    }
}
