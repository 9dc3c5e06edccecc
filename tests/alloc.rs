//! Heap allocations per call, counted by a global allocator in this test binary
//! of its own. An allocation count is deterministic, unlike a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use safecall::{Backoff, SafeCall};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: each method forwards to the system allocator unchanged; the counter
// is a thread-local with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator, whose contract
        // the caller already meets.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

async fn ready_ok() -> Result<u32, std::io::Error> {
    Ok(1)
}

#[test]
fn a_successful_call_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let policies: Vec<SafeCall<std::io::Error>> = vec![
            SafeCall::default(),
            SafeCall::builder()
                .deadline(Duration::from_secs(5))
                .attempt_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        ];
        for policy in &policies {
            // Warm up: the budget's first clock reading, thread-locals, the timer.
            for _ in 0..200 {
                policy.call(ready_ok).await.unwrap();
            }
            let before = allocations();
            for _ in 0..1_000 {
                policy.call(ready_ok).await.unwrap();
            }
            assert_eq!(allocations() - before, 0, "{policy:?}");
        }
    });
}

#[test]
fn zero_delay_retries_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let policy: SafeCall<std::io::Error> = SafeCall::builder()
            .backoff(Backoff::constant(Duration::ZERO))
            .retry_budget(safecall::RetryBudget::disabled())
            .build()
            .unwrap();
        let before = allocations();
        for _ in 0..1_000 {
            let mut n = 0;
            let result = policy
                .call(|| {
                    n += 1;
                    let fail = n < 3;
                    async move {
                        if fail {
                            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                        } else {
                            Ok(n)
                        }
                    }
                })
                .await;
            assert_eq!(result.unwrap(), 3);
        }
        assert_eq!(allocations() - before, 0);
    });
}
