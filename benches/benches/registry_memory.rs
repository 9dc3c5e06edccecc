//! Bytes per tenant breaker at 1,000,000 keys, from the process's resident set
//! (`/proc/self/statm`) and from the live heap: safecall's registry against
//! recloser's and failsafe's breakers kept in a `DashMap` (neither crate has a
//! keyed registry; a concurrent map is what a service would use).
//! Run with `cargo bench -p safecall-bench --bench registry_memory`.
//!
//! Each scenario runs in a fresh child process (freed memory is not returned
//! to the OS, so scenarios cannot share one); the children run concurrently
//! (RSS is per process) and print RSS growth per key. The idle scenarios wait
//! 34 s of real time for safecall's 30 s window to empty (no paused clock here:
//! this crate does not use tokio's `test-util`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

/// Live heap bytes, each allocation rounded up to the glibc chunk it takes
/// (size + 8 header, 16-byte aligned, at least 32): RSS as it would be
/// without fragmentation, and it goes down when memory is freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn chunk(size: usize) -> isize {
    (((size + 8 + 15) & !15).max(32)) as isize
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(chunk(l.size()), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(chunk(l.size()), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(chunk(new) - chunk(l.size()), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

use safecall::{BreakerConfig, BreakerRegistry, Outcome};
use safecall_bench::{FailsafeBreaker, OPEN, failsafe_breaker, key, recloser_breaker};

const KEYS: usize = 1_000_000;
/// Long enough for a 30 s window (10 buckets of 3 s) to have emptied after the
/// last key was recorded.
const IDLE: Duration = Duration::from_secs(34);
const SCENARIOS: [&str; 9] = [
    "bare HashMap<String, ()> (reference)",
    "bare DashMap<String, ()> (reference)",
    "safecall registry, get only (never called)",
    "safecall registry, consecutive-failures config, 1 success per key",
    "safecall registry, default config, 1 success per key (window live)",
    "safecall registry, default config, 1 success per key, idle 34 s + housekeeping",
    "safecall registry, default config, 1 failure per key, idle 34 s + housekeeping",
    "recloser in DashMap<String, Recloser>, 1 success per key",
    "failsafe in DashMap<String, StateMachine>, 1 success per key",
];

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn registry(config: BreakerConfig) -> BreakerRegistry<String> {
    BreakerRegistry::new(config)
        .max_keys(KEYS)
        .idle_ttl(Duration::from_secs(3600))
}

fn heap() -> usize {
    LIVE.load(Ordering::Relaxed).max(0) as usize
}

/// (RSS growth, live heap growth) in bytes.
fn run(scenario: usize) -> (usize, usize) {
    let before = rss_bytes();
    let heap_before = heap();
    let measure = || (rss_bytes().saturating_sub(before), heap() - heap_before);
    match scenario {
        0 => {
            let bare: HashMap<String, ()> = (0..KEYS).map(|i| (key(i), ())).collect();
            let m = measure();
            black_box(&bare);
            m
        }
        1 => {
            let bare: dashmap::DashMap<String, ()> = (0..KEYS).map(|i| (key(i), ())).collect();
            let m = measure();
            black_box(&bare);
            m
        }
        2 => {
            let r = registry(BreakerConfig::default());
            for i in 0..KEYS {
                drop(r.get(&key(i)));
            }
            assert_eq!(r.len(), KEYS);
            measure()
        }
        3..=6 => {
            let config = if scenario == 3 {
                BreakerConfig::default().no_failure_rate()
            } else {
                BreakerConfig::default()
            };
            let r = registry(config);
            let outcome = if scenario == 6 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            for i in 0..KEYS {
                let b = r.get(&key(i));
                if let Ok(p) = b.try_acquire() {
                    p.record(outcome);
                }
            }
            if scenario >= 5 {
                std::thread::sleep(IDLE);
                r.retain_recent();
            }
            assert_eq!(r.len(), KEYS);
            measure()
        }
        7 => {
            let map: dashmap::DashMap<String, recloser::Recloser> = (0..KEYS)
                .map(|i| (key(i), recloser_breaker(OPEN)))
                .collect();
            for e in map.iter() {
                let _ = e.value().call(|| Ok::<_, ()>(()));
            }
            let m = measure();
            black_box(&map);
            m
        }
        8 => {
            use failsafe::CircuitBreaker as _;
            let map: dashmap::DashMap<String, FailsafeBreaker> = (0..KEYS)
                .map(|i| (key(i), failsafe_breaker(OPEN)))
                .collect();
            for e in map.iter() {
                let _ = e.value().call(|| Ok::<_, ()>(()));
            }
            let m = measure();
            black_box(&map);
            m
        }
        _ => (0, 0),
    }
}

fn main() {
    if let Ok(s) = std::env::var("SAFECALL_MEM_SCENARIO") {
        let (rss, heap) = run(s.parse().unwrap_or(usize::MAX));
        println!("{rss} {heap}");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let children: Vec<_> = (0..SCENARIOS.len())
        .map(|i| {
            std::process::Command::new(&exe)
                .env("SAFECALL_MEM_SCENARIO", i.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("child")
        })
        .collect();
    println!("| scenario (1,000,000 keys) | RSS B/key | live heap B/key |\n| --- | ---: | ---: |");
    for (label, child) in SCENARIOS.iter().zip(children) {
        let out = child.wait_with_output().expect("child output");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut nums = text
            .split_whitespace()
            .map(|n| n.parse::<f64>().unwrap_or(f64::NAN));
        let (rss, heap) = (
            nums.next().unwrap_or(f64::NAN),
            nums.next().unwrap_or(f64::NAN),
        );
        println!(
            "| {label} | {:.0} | {:.0} |",
            rss / KEYS as f64,
            heap / KEYS as f64,
        );
    }
}
