//! A real `redis-server` per test, started by the test (so it can be killed
//! and restarted), a loopback proxy that can stall, and polling helpers.
//!
//! Without a `redis-server` binary a test prints a loud skip and passes,
//! unless `SAFECALL_REQUIRE_REDIS=1` (CI sets it): then it fails.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn binary_found() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// A fresh server, or `None` (after a loud skip message) when there is
    /// no `redis-server` and `SAFECALL_REQUIRE_REDIS` is not `1`.
    pub async fn start(test: &str) -> Option<Self> {
        if !binary_found() {
            if std::env::var("SAFECALL_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("SAFECALL_REQUIRE_REDIS=1 but no `redis-server` on PATH (test {test})");
            }
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED {test}: no `redis-server` on PATH.\n\
                 !!! Install it (Debian: apt-get install -y redis-server) to run the\n\
                 !!! fleet tests; SAFECALL_REQUIRE_REDIS=1 makes this skip a failure.\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            return None;
        }
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill the server (a crash: no shutdown, no save).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port, and wait until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        eventually("redis-server answers", Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                match client.get_multiplexed_async_connection().await {
                    Ok(mut c) => redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("connects")
    }

    /// Calls of every command but `INFO` (and `PING`, `CONFIG`, `CLIENT`,
    /// `HELLO`, `SUBSCRIBE`: the test's own and the connections' handshakes),
    /// from `INFO commandstats`.
    pub async fn data_commands(&self) -> u64 {
        let mut c = self.conn().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .expect("INFO");
        commandstats(&info)
            .into_iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "info"
                        | "ping"
                        | "config|get"
                        | "client|setinfo"
                        | "hello"
                        | "subscribe"
                        | "select"
                )
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub async fn commandstats(&self) -> Vec<(String, u64)> {
        let mut c = self.conn().await;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .expect("INFO");
        commandstats(&info)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cmdstat_set:calls=3,usec=...` lines as `("set", 3)`.
pub fn commandstats(info: &str) -> Vec<(String, u64)> {
    info.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Poll `cond` until it holds, at most `bound` (generous: never a fixed
/// sleep standing in for "long enough").
pub async fn eventually<F, Fut>(what: &str, bound: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < bound, "not within {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A loopback TCP proxy to a port; `stall()` makes it stop forwarding
/// (connections stay open, bytes are held).
pub struct Proxy {
    pub port: u16,
    stalled: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(to: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stalled = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stalled);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let addr = SocketAddr::from(([127, 0, 0, 1], to));
                    let Ok(server) = tokio::net::TcpStream::connect(addr).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, Arc::clone(&st)));
                    tokio::spawn(pump(sr, cw, st));
                });
            }
        });
        Self { port, stalled }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        while stalled.load(Ordering::SeqCst) {
            // Hold the bytes: a stalled link, not a closed one.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// p-quantile of sorted durations.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
