//! Shared helpers for the integration tests. Scripted operations come from the
//! public test kit, `safecall::testing`.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

/// The error the scripted operations return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestError {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}", self.status)
    }
}

impl std::error::Error for TestError {}

pub fn status(status: u16) -> TestError {
    TestError {
        status,
        retry_after: None,
    }
}

pub fn retry_after(secs: u64) -> TestError {
    TestError {
        status: 429,
        retry_after: Some(Duration::from_secs(secs)),
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// What a [`capture_logs`] subscriber wrote, as text.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Serialises the tests of one binary that install a scoped subscriber.
///
/// `tracing` keeps one global maximum level, recomputed whenever a dispatcher
/// registers; two tests registering at once can leave it at the lower level
/// while the other's subscriber is live, so a `level_enabled!(DEBUG)` check
/// (the call's lazy span) wrongly says no. Hold this for the test's length.
pub fn log_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A plain-text `fmt` subscriber up to `level`, and what it writes.
pub fn capture_logs(level: tracing::Level) -> (impl tracing::Subscriber, Logs) {
    let logs = Logs::default();
    let w = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    (subscriber, logs)
}

/// A current-thread runtime with the time driver, its clock paused: for the
/// tests that build a runtime per case (property tests).
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}
