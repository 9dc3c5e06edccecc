//! Bytes per idle tenant breaker in a registry of 1,000,000 keys, from the
//! process's resident set (`/proc/self/statm`). Run with
//! `cargo bench --bench registry_memory`.
//!
//! Each scenario runs in a fresh child process (freed memory is not returned
//! to the OS, so scenarios cannot share one) and prints RSS growth per key:
//!
//! - a bare `HashMap<String, ()>` of the same keys: the floor any keyed map pays;
//! - the registry after one `get` per key;
//! - after one recorded success per key (which builds the breaker's window,
//!   for the default 30 s time window);
//! - the same, once the window has emptied and housekeeping has compacted the
//!   idle breakers (`retain_recent`): an idle tenant.

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

const KEYS: usize = 1_000_000;
const SCENARIOS: [&str; 6] = [
    "bare HashMap<String, ()> (reference)",
    "registry, default config, get only",
    "registry, consecutive-failures only, 1 success per key",
    "registry, default config (30 s window), 1 success per key",
    "registry, default config, 1 success per key, idle 31 s + housekeeping",
    "registry, default config, 1 failure per key, idle 31 s + housekeeping",
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

fn key(i: usize) -> String {
    format!("org-{i:07}")
}

fn registry(config: BreakerConfig) -> BreakerRegistry<String> {
    BreakerRegistry::new(config)
        .max_keys(KEYS)
        .idle_ttl(Duration::from_secs(3600))
}

fn heap() -> usize {
    LIVE.load(Ordering::Relaxed).max(0) as usize
}

fn run(scenario: usize) -> (usize, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let _clock = rt.enter();
    let before = rss_bytes();
    let heap_before = heap();
    let rss = match scenario {
        0 => {
            let mut bare: HashMap<String, ()> = HashMap::new();
            for i in 0..KEYS {
                bare.insert(key(i), ());
            }
            let used = rss_bytes() - before;
            black_box(&bare);
            return (used, heap() - heap_before);
        }
        1 => {
            let r = registry(BreakerConfig::default());
            for i in 0..KEYS {
                drop(r.get(&key(i)));
            }
            return (rss_bytes() - before, heap() - heap_before);
        }
        2..=5 => {
            let config = if scenario == 2 {
                BreakerConfig::default().no_failure_rate()
            } else {
                BreakerConfig::default()
            };
            let r = registry(config);
            let outcome = if scenario == 5 {
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
            if scenario >= 4 {
                rt.block_on(tokio::time::advance(Duration::from_secs(31)));
                r.retain_recent();
            }
            assert_eq!(r.len(), KEYS);
            return (rss_bytes() - before, heap() - heap_before);
        }
        _ => 0,
    };
    (rss, 0)
}

fn main() {
    if let Ok(s) = std::env::var("SAFECALL_MEM_SCENARIO") {
        let (rss, heap) = run(s.parse().unwrap_or(usize::MAX));
        println!("{rss} {heap}");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for (i, label) in SCENARIOS.iter().enumerate() {
        let out = std::process::Command::new(&exe)
            .env("SAFECALL_MEM_SCENARIO", i.to_string())
            .output()
            .expect("child");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut nums = text
            .split_whitespace()
            .map(|n| n.parse::<f64>().unwrap_or(f64::NAN));
        let (rss, heap) = (
            nums.next().unwrap_or(f64::NAN),
            nums.next().unwrap_or(f64::NAN),
        );
        println!(
            "{label:<70} RSS {:>6.1} B/key   live heap {:>6.1} B/key",
            rss / KEYS as f64,
            heap / KEYS as f64,
        );
    }
}
