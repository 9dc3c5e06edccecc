//! Shared helpers for the integration tests: scripted operations and counters.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

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

/// One scripted attempt: how long it takes, then what it returns.
#[derive(Debug, Clone)]
pub enum Step {
    Ok(u32),
    Err(TestError),
    /// Never completes.
    Hang,
    /// Completes after a delay with the inner outcome.
    After(Duration, Box<Step>),
}

/// A scripted operation: plays its steps in order (the last one repeats) and
/// records when each attempt started, on tokio's clock.
#[derive(Clone)]
pub struct Script {
    steps: Arc<Mutex<VecDeque<Step>>>,
    last: Arc<Mutex<Option<Step>>>,
    pub calls: Arc<AtomicU32>,
    pub started_at: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            last: Arc::new(Mutex::new(None)),
            calls: Arc::new(AtomicU32::new(0)),
            started_at: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Attempt start times relative to `origin`.
    pub fn offsets(&self, origin: Instant) -> Vec<Duration> {
        self.started_at
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.duration_since(origin))
            .collect()
    }

    /// Makes the next attempt's future.
    pub fn attempt(&self) -> impl std::future::Future<Output = Result<u32, TestError>> + use<> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.started_at.lock().unwrap().push(Instant::now());
        let step = {
            let mut steps = self.steps.lock().unwrap();
            let mut last = self.last.lock().unwrap();
            match steps.pop_front() {
                Some(s) => {
                    *last = Some(s.clone());
                    s
                }
                None => last.clone().expect("script has steps"),
            }
        };
        play(step)
    }
}

fn play(
    step: Step,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, TestError>> + Send>> {
    Box::pin(async move {
        match step {
            Step::Ok(v) => Ok(v),
            Step::Err(e) => Err(e),
            Step::Hang => std::future::pending().await,
            Step::After(d, inner) => {
                tokio::time::sleep(d).await;
                play(*inner).await
            }
        }
    })
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}
