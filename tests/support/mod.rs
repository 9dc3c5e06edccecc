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
