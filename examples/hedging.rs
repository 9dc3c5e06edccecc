//! Hedged requests against a tail, measured: the "Tail at Scale" effect over
//! real HTTP on loopback.
//!
//! A stand-in server (axum on 127.0.0.1) answers each request after 10 ms, or,
//! for 2 % of requests drawn independently from a seeded generator, after 1 s:
//! a garbage collection, a cold cache, a busy replica. A reqwest client sends
//! the same requests three ways, some at a time, and prints p50 / p99 / p99.9
//! latency and the extra requests the server received:
//!
//! 1. without hedging;
//! 2. with `Hedge::after(p95)`, the p95 of run 1: the delay Dean and Barroso
//!    recommend ("defer sending a secondary request until the first request
//!    has been outstanding for more than the 95th-percentile expected
//!    latency"), fixed by hand from a measurement;
//! 3. with `Hedge::at_percentile(0.95)`, which learns that delay from the
//!    latencies it sees, and follows it when it moves.
//!
//! Each run starts with a fresh policy and hedge and sends 200 requests that
//! are not measured (the learning hedge needs `min_samples`, 100 by default,
//! before it hedges; the others get the same warm connections).
//!
//! ```text
//! cargo run --example hedging               # the README's table
//! cargo run --example hedging -- 5000 20    # requests per run, concurrency
//! ```
//!
//! Which requests are slow is fixed by the seed; which attempt draws which
//! latency depends on arrival order, so figures vary a little between runs.
//! Only hedge idempotent requests: both attempts may reach the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use safecall::{Hedge, SafeCall};
use tokio::time::Instant;

/// The stand-in's latencies: 10 ms, or 1 s for `SLOW_PER_MILLE` / 1000 of
/// the requests.
const FAST: Duration = Duration::from_millis(10);
const SLOW: Duration = Duration::from_secs(1);
const SLOW_PER_MILLE: u64 = 20;
const SEED: u64 = 0x5afe_ca11_7a11;
/// Unmeasured requests at the start of each run.
const WARM_UP: usize = 200;

/// The stand-in server: counts requests, and draws each one's latency.
#[derive(Debug, Default)]
struct StandIn {
    requests: AtomicU64,
}

/// SplitMix64: the `n`-th draw of a seeded generator, independent per `n`.
fn draw(n: u64) -> u64 {
    let mut z = SEED.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn answer(State(s): State<Arc<StandIn>>) -> &'static str {
    let n = s.requests.fetch_add(1, Ordering::Relaxed);
    let slow = draw(n) % 1000 < SLOW_PER_MILLE;
    tokio::time::sleep(if slow { SLOW } else { FAST }).await;
    "ok"
}

/// One run's client-side latencies and the requests the server received.
struct Run {
    name: String,
    latencies: Vec<Duration>,
    requests: u64,
}

impl Run {
    /// The nearest-rank `p`-quantile.
    fn quantile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
        let rank = (p * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn extra(&self) -> u64 {
        self.requests.saturating_sub(self.latencies.len() as u64)
    }
}

/// Sends `n` requests, `concurrency` at a time, each through `policy` (and
/// `hedge`, if any); returns their latencies.
async fn send(
    client: &reqwest::Client,
    url: &str,
    policy: &SafeCall<reqwest::Error>,
    hedge: Option<&Hedge>,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Duration>, safecall::Error<reqwest::Error>> {
    let next = AtomicU64::new(0);
    let worker = || async {
        let mut latencies = Vec::new();
        while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
            let started = Instant::now();
            let call = policy.call(|| {
                let request = client.get(url);
                async move { request.send().await?.error_for_status()?.bytes().await }
            });
            let result = match hedge {
                Some(h) => call.hedge(h).await,
                None => call.await,
            };
            result?;
            latencies.push(started.elapsed());
        }
        Ok::<_, safecall::Error<reqwest::Error>>(latencies)
    };
    let workers = futures::future::try_join_all((0..concurrency).map(|_| worker())).await?;
    Ok(workers.into_iter().flatten().collect())
}

/// The client side of the measurement.
struct Stand {
    client: reqwest::Client,
    url: String,
    stand_in: Arc<StandIn>,
    concurrency: usize,
}

impl Stand {
    /// One run: a fresh policy, `WARM_UP` unmeasured requests, then `n`
    /// measured ones, and the requests the server received for them.
    async fn measure(
        &self,
        name: String,
        hedge: Option<Hedge>,
        n: usize,
    ) -> Result<Run, Box<dyn std::error::Error>> {
        // One attempt, and the hedge: a retry would blur the count.
        let policy: SafeCall<reqwest::Error> = SafeCall::builder().max_retries(1).build()?;
        let (client, url, hedge) = (&self.client, &self.url, hedge.as_ref());
        send(client, url, &policy, hedge, WARM_UP, self.concurrency).await?;
        let before = self.stand_in.requests.load(Ordering::Relaxed);
        let latencies = send(client, url, &policy, hedge, n, self.concurrency).await?;
        let requests = self.stand_in.requests.load(Ordering::Relaxed) - before;
        Ok(Run {
            name,
            latencies,
            requests,
        })
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(3000), |s| s.parse())?;
    let concurrency: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;

    let stand_in = Arc::new(StandIn::default());
    let app = axum::Router::new()
        .route("/", get(answer))
        .with_state(Arc::clone(&stand_in));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2 * concurrency)
        .build()?;

    println!(
        "{n} requests per run, {concurrency} at a time, over loopback; the server answers \
         in {} ({}.{} %) or {} ({}.{} %)\n",
        ms(FAST),
        (1000 - SLOW_PER_MILLE) / 10,
        (1000 - SLOW_PER_MILLE) % 10,
        ms(SLOW),
        SLOW_PER_MILLE / 10,
        SLOW_PER_MILLE % 10,
    );

    let stand = Stand {
        client,
        url,
        stand_in,
        concurrency,
    };
    let unhedged = stand.measure("no hedge".to_owned(), None, n).await?;
    let p95 = unhedged.quantile(0.95);
    let after = stand
        .measure(
            format!("`Hedge::after({})`, the p95 above", ms(p95)),
            Some(Hedge::after(p95)),
            n,
        )
        .await?;
    let learning = Hedge::at_percentile(0.95);
    let mut learnt = stand
        .measure(
            "`Hedge::at_percentile(0.95)`".to_owned(),
            Some(learning.clone()),
            n,
        )
        .await?;
    if let Some(delay) = learning.delay() {
        learnt.name = format!("{} (learnt {})", learnt.name, ms(delay));
    }
    let runs = [unhedged, after, learnt];

    println!("| run | p50 | p99 | p99.9 | extra requests |");
    println!("| --- | --: | --: | --: | --: |");
    for r in &runs {
        #[allow(clippy::cast_precision_loss)]
        let share = 100.0 * r.extra() as f64 / r.latencies.len() as f64;
        println!(
            "| {} | {} | {} | {} | {} ({share:.1} %) |",
            r.name,
            ms(r.quantile(0.5)),
            ms(r.quantile(0.99)),
            ms(r.quantile(0.999)),
            r.extra(),
        );
    }
    println!(
        "\nDean & Barroso, \"The Tail at Scale\" (CACM 2013), BigTable with a 10 ms hedge \
         delay: p99.9 from 1,800 ms to 74 ms, for about 2 % more requests."
    );

    // CI runs this example: hedging must cut the tail it exists for.
    let unhedged = runs[0].quantile(0.99);
    for r in &runs[1..] {
        if r.quantile(0.99) * 2 > unhedged {
            return Err(format!(
                "{}: p99 {} is not below half of {}",
                r.name,
                ms(r.quantile(0.99)),
                ms(unhedged)
            )
            .into());
        }
    }
    server.abort();
    Ok(())
}
