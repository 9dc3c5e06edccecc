//! Instruction counts of every case and every peer of the performance table,
//! under gungraun (callgrind): counts do not move with the machine's load, so
//! a claim made from them holds on a noisy machine.
//!
//! Each case (`safecall_bench::cases`) is prepared outside the count
//! (gungraun's `setup`: runtime, policy, breakers, a registry's keys), then
//! runs [`N`] and `2 * N` calls in two benchmarks; what is left of a fixed
//! cost (the `block_on`, first use) is the same in both, so instructions per
//! call = `(Ir(2N) - Ir(N)) / N`.
//! `benches/table.py` does that subtraction and sets the counts beside
//! criterion's medians.
//!
//! Run (needs valgrind and `cargo install gungraun-runner --version 0.20.0`):
//! `cargo bench -p safecall-bench --bench instructions`; CI only compiles it.

use std::hint::black_box;

use gungraun::{library_benchmark, library_benchmark_group, main};
use safecall_bench::cases::{self, Prepared};

/// Calls per benchmark at the smaller size.
const N: u64 = 1_000;

/// Builds a case's state before the count starts (gungraun's `setup`).
fn prepare(name: &str, n: u64) -> (Prepared, u64) {
    match cases::prepare(name) {
        Some(case) => (case, n),
        None => panic!("unknown case {name}"),
    }
}

/// A gungraun benchmark per case, at `N` and `2 * N` calls, named
/// `<group>_<function>` after the case `<group>/<function>`, in a gungraun
/// group `<group>_group`.
macro_rules! cases {
    ($group:ident: $($bench:ident = $case:literal),+ $(,)?) => {
        $(
            #[library_benchmark]
            #[bench::n(args = ($case, N), setup = prepare)]
            #[bench::n2(args = ($case, 2 * N), setup = prepare)]
            fn $bench(input: (Prepared, u64)) -> Prepared {
                let (mut case, n) = input;
                black_box(case.run(n));
                // Dropped after the count, with the rest of the setup.
                case
            }
        )+
        library_benchmark_group!(name = $group, benchmarks = [$($bench),+]);
    };
}

cases!(
    success_retry_group:
    success_retry_bare_call = "success_retry/bare_call",
    success_retry_safecall = "success_retry/safecall",
    success_retry_safecall_no_budget = "success_retry/safecall_no_budget",
    success_retry_tower_retry = "success_retry/tower_retry",
    success_retry_backon = "success_retry/backon",
    success_retry_tokio_retry2 = "success_retry/tokio_retry2",
    success_retry_seatbelt = "success_retry/seatbelt",
);
cases!(
    success_breaker_group:
    success_breaker_safecall_default = "success_breaker/safecall_default",
    success_breaker_safecall_count = "success_breaker/safecall_count",
    success_breaker_safecall_consecutive = "success_breaker/safecall_consecutive",
    success_breaker_recloser = "success_breaker/recloser",
    success_breaker_failsafe = "success_breaker/failsafe",
    success_breaker_tower_resilience = "success_breaker/tower_resilience",
    success_breaker_seatbelt = "success_breaker/seatbelt",
);
cases!(
    success_registry_10k_group:
    success_registry_10k_map_lookup_only = "success_registry_10k/map_lookup_only",
    success_registry_10k_rwlock_map_lookup_only = "success_registry_10k/rwlock_map_lookup_only",
    success_registry_10k_dashmap_lookup_only = "success_registry_10k/dashmap_lookup_only",
    success_registry_10k_safecall_lookup_only = "success_registry_10k/safecall_lookup_only",
    success_registry_10k_safecall_with_lookup_only = "success_registry_10k/safecall_with_lookup_only",
    success_registry_10k_safecall_with_breaker_alone = "success_registry_10k/safecall_with_breaker_alone",
    success_registry_10k_safecall = "success_registry_10k/safecall",
    success_registry_10k_recloser = "success_registry_10k/recloser",
    success_registry_10k_failsafe = "success_registry_10k/failsafe",
);
cases!(
    open_rejection_group:
    open_rejection_safecall_default = "open_rejection/safecall_default",
    open_rejection_safecall_count = "open_rejection/safecall_count",
    open_rejection_safecall_consecutive = "open_rejection/safecall_consecutive",
    open_rejection_recloser = "open_rejection/recloser",
    open_rejection_failsafe = "open_rejection/failsafe",
    open_rejection_tower_resilience = "open_rejection/tower_resilience",
    open_rejection_seatbelt = "open_rejection/seatbelt",
);
cases!(
    three_attempts_zero_delay_group:
    three_attempts_zero_delay_safecall = "three_attempts_zero_delay/safecall",
    three_attempts_zero_delay_tower_retry = "three_attempts_zero_delay/tower_retry",
    three_attempts_zero_delay_seatbelt = "three_attempts_zero_delay/seatbelt",
    three_attempts_zero_delay_backon = "three_attempts_zero_delay/backon",
    three_attempts_zero_delay_tokio_retry2 = "three_attempts_zero_delay/tokio_retry2",
);
cases!(
    tower_stack_success_group:
    tower_stack_success_bare_service = "tower_stack_success/bare_service",
    tower_stack_success_tower_retry = "tower_stack_success/tower_retry",
    tower_stack_success_safecall_layer = "tower_stack_success/safecall_layer",
    tower_stack_success_safecall_layer_no_budget = "tower_stack_success/safecall_layer_no_budget",
    tower_stack_success_safecall_layer_breaker = "tower_stack_success/safecall_layer_breaker",
    tower_stack_success_tower_resilience = "tower_stack_success/tower_resilience",
);

main!(
    library_benchmark_groups = success_retry_group,
    success_breaker_group,
    success_registry_10k_group,
    open_rejection_group,
    three_attempts_zero_delay_group,
    tower_stack_success_group
);
