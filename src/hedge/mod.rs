//! Hedged (backup) requests. On this branch, only the latency tracker; the
//! `Hedge` type and `Call::hedge` come from the hedge branch, whose `mod.rs`
//! replaces this one.

// Nothing calls the tracker until `Hedge::at_percentile` does.
#[allow(dead_code)]
mod tracker;
