//! The jitter contention study of the AWS Architecture Blog's "Exponential
//! Backoff And Jitter", replayed with `safecall::Backoff` itself.
//!
//! N clients each update one row once under optimistic concurrency: read the
//! row's version, write it back conditionally; a write based on a stale version
//! fails, and the client backs off and starts again with a fresh read. Every
//! message crosses a network with delay |N(10 ms, 2 ms)|. Backoff: exponential
//! from a base of 5 ms (factor 2), capped at 2 s, with each of the four jitter
//! kinds. The measures are the writes made (calls) and the time until the last
//! client has finished, each the mean of 100 runs.
//!
//! It runs in simulated time (a discrete-event simulation: a queue of messages
//! ordered by arrival time), so 100 runs of 100 clients take milliseconds, and
//! every run is reproducible from its seed.
//!
//! Run: `cargo run --release -p safecall-bench --bin jitter_study` (add
//! `--quick` for the CI form: 10 runs; `--out FILE` to also write the table;
//! `--aws-schedule` to replay the AWS simulator's schedule exactly, whose
//! exponential kinds wait `2 × base` before the first retry).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use safecall::{Backoff, Jitter};

const BASE: Duration = Duration::from_millis(5);
const CAP: Duration = Duration::from_secs(2);
const NET_MEAN_MS: f64 = 10.0;
const NET_SD_MS: f64 = 2.0;
const CLIENTS: [usize; 4] = [10, 20, 50, 100];
const KINDS: [(Jitter, &str); 4] = [
    (Jitter::None, "no jitter"),
    (Jitter::Equal, "Equal"),
    (Jitter::Full, "Full"),
    (Jitter::Decorrelated, "Decorrelated"),
];
/// The shape expected at 50 clients (a re-run of AWS's published simulator):
/// (calls, seconds), within about ±10 %.
const EXPECTED_AT_50: [(f64, f64); 4] = [(625.0, 36.7), (348.0, 4.3), (333.0, 2.9), (376.0, 2.3)];

/// SplitMix64, for the network's delays (the backoff draws its own jitter).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// One network crossing, in milliseconds: |N(mean, sd)| (Box–Muller).
    fn net_delay(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        (NET_MEAN_MS + NET_SD_MS * z).abs()
    }
}

/// What arrives where.
#[derive(Debug, Clone, Copy)]
enum Msg {
    /// A read request reaches the server.
    Read,
    /// The server's answer to a read reaches the client: the version it saw.
    ReadRsp(u64),
    /// A conditional write (based on this version) reaches the server.
    Write(u64),
    /// The server's answer to a write reaches the client.
    WriteRsp(bool),
}

struct Event {
    at_ms: f64,
    seq: u64,
    client: usize,
    msg: Msg,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    /// Reversed: `BinaryHeap` pops the earliest event first (ties: first sent).
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at_ms
            .total_cmp(&self.at_ms)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// One run: returns (writes made, milliseconds until the last client is done).
fn run_once(clients: usize, jitter: Jitter, seed: u64, aws_schedule: bool) -> (u64, f64) {
    // safecall's first retry waits `base`; the AWS simulator's exponential kinds
    // wait `2 * base` first (`base * 2^n` from n = 1), its decorrelated kind
    // draws from `[base, 3 * base]`. `--aws-schedule` doubles the base of the
    // exponential kinds to replay exactly that schedule.
    let base = if aws_schedule && jitter != Jitter::Decorrelated {
        BASE * 2
    } else {
        BASE
    };
    let backoff = Backoff::exponential(base).max_delay(CAP).jitter(jitter);
    let mut net = Rng(seed ^ 0xD1B5_4A32_D192_ED03);
    // Each client's retry schedule is one call's delays under the policy.
    let mut schedules: Vec<_> = (0..clients)
        .map(|i| backoff.delays(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)))
        .collect();
    let mut queue = BinaryHeap::new();
    let mut seq = 0u64;
    let mut send = |queue: &mut BinaryHeap<Event>, at_ms: f64, client: usize, msg: Msg| {
        seq += 1;
        queue.push(Event {
            at_ms,
            seq,
            client,
            msg,
        });
    };
    for c in 0..clients {
        let d = net.net_delay();
        send(&mut queue, d, c, Msg::Read);
    }
    let (mut version, mut calls, mut now) = (0u64, 0u64, 0.0f64);
    while let Some(e) = queue.pop() {
        debug_assert!(e.at_ms >= now, "time moves forward");
        now = e.at_ms;
        let d = net.net_delay();
        match e.msg {
            Msg::Read => send(&mut queue, now + d, e.client, Msg::ReadRsp(version)),
            Msg::ReadRsp(v) => send(&mut queue, now + d, e.client, Msg::Write(v)),
            Msg::Write(v) => {
                calls += 1;
                let ok = v == version;
                if ok {
                    version += 1;
                }
                send(&mut queue, now + d, e.client, Msg::WriteRsp(ok));
            }
            Msg::WriteRsp(true) => {} // this client is done
            Msg::WriteRsp(false) => {
                let wait = schedules[e.client].next().unwrap_or(CAP).as_secs_f64() * 1e3;
                send(&mut queue, now + d + wait, e.client, Msg::Read);
            }
        }
    }
    assert_eq!(version, clients as u64, "every client wrote once");
    (calls, now)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1).cloned());
    let aws_schedule = args.iter().any(|a| a == "--aws-schedule");
    let runs: u64 = if quick { 10 } else { 100 };
    let started = std::time::Instant::now();

    let mut table = String::new();
    table.push_str(&format!(
        "Mean of {runs} runs; base {}, cap 2 s, network |N(10 ms, 2 ms)|; calls = writes made, \
         time = until the last client is done.\n\n",
        if aws_schedule {
            "10 ms for the exponential kinds (AWS's schedule: first retry 2 × 5 ms), 5 ms for Decorrelated"
        } else {
            "5 ms (safecall's schedule: the first retry waits the base)"
        }
    ));
    table.push_str("| clients | jitter | calls | time (s) |\n| ---: | --- | ---: | ---: |\n");
    let mut at_50 = [(0.0, 0.0); 4];
    for &n in &CLIENTS {
        for (k, &(jitter, name)) in KINDS.iter().enumerate() {
            let (mut calls, mut ms) = (0u64, 0.0f64);
            for r in 0..runs {
                let (c, t) = run_once(n, jitter, 0x5AFE_CA11 + r * 7919 + n as u64, aws_schedule);
                calls += c;
                ms += t;
            }
            let (calls, secs) = (calls as f64 / runs as f64, ms / runs as f64 / 1e3);
            if n == 50 {
                at_50[k] = (calls, secs);
            }
            table.push_str(&format!("| {n} | {name} | {calls:.0} | {secs:.2} |\n"));
        }
    }
    print!("{table}");

    let mut verdict = String::from("\nAt 50 clients against the expected shape (±10 %):\n\n");
    verdict.push_str("| jitter | calls (expected) | time s (expected) |\n| --- | ---: | ---: |\n");
    let mut within = true;
    for (k, &(_, name)) in KINDS.iter().enumerate() {
        let ((c, t), (ec, et)) = (at_50[k], EXPECTED_AT_50[k]);
        let ok = (c / ec - 1.0).abs() <= 0.10 && (t / et - 1.0).abs() <= 0.10;
        within &= ok;
        verdict.push_str(&format!(
            "| {name} | {c:.0} ({ec:.0}) | {t:.2} ({et:.1}){} |\n",
            if ok { "" } else { " ⚠" }
        ));
    }
    let (none, full) = (at_50[0], at_50[2]);
    let full_good = full.0 < none.0 * 0.6 && full.1 < none.1 * 0.2 && full.0 <= at_50[1].0 * 1.05;
    verdict.push_str(&format!(
        "\nVerdict: the default jitter (Full) makes {:.0} % of the calls of no jitter and finishes \
         in {:.0} % of its time{}; {}.\n",
        100.0 * full.0 / none.0,
        100.0 * full.1 / none.1,
        if full_good {
            ", the fewest calls of the four kinds with Equal's (the good side of the table)"
        } else {
            " — NOT on the good side of the table"
        },
        if within {
            "every kind is within ±10 % of the expected shape"
        } else {
            "some kinds are outside ±10 % of the expected shape (marked ⚠)"
        },
    ));
    print!("{verdict}");
    println!("\n({:.2} s wall clock)", started.elapsed().as_secs_f64());
    if let Some(path) = out {
        std::fs::write(&path, format!("{table}{verdict}")).expect("write the table");
    }
    if !full_good {
        std::process::exit(1);
    }
}
