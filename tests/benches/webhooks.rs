//! What webhook notifications cost: durable decisions per second through
//! the host with 0, 1 and 10 subscriptions that want every event, while the
//! sender delivers them to a receiver on loopback, and the delivery lag
//! (from the record's time to the receiver's arrival) at that load.
//!
//! ```text
//! cargo bench -p chaperone-tests --bench webhooks
//! ```
//!
//! Eight client threads send `act` requests spread over 64 Celigo accounts
//! (each with an active grant). Each subscription is a vendor subscription
//! for `celigo` with types `*`, so with 10 subscriptions every decision
//! writes 10 deliveries in its transaction and makes 10 signed POSTs. The
//! runs alternate (0, 1, 10 subscriptions with the sender off: what the
//! outbox costs a decision; then 1 and 10 with the sender on: what sending
//! costs the machine, and the lag), twice, because the machine drifts.
//! Two paced runs (100 decisions/s, which the sender keeps up with) show
//! the lag a subscriber sees when no backlog is queued ahead of its events.
//! `WEBHOOK_BENCH_CONCURRENCY` sets the sender's requests in flight per
//! subscription (default: `serve`'s).
//! `WEBHOOK_BENCH_OPS` sets the operations per thread (default 2000).
//! Without `--bench` (as `cargo test --benches` runs it) each run is tiny.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use chaperone::instant;
use chaperone::service::{Host, HostOptions, ParsedRequest, parse_request};
use chaperone::webhook::worker::WebhookOptions;
use chaperone_store::outbox::Owner;
use chaperone_tests::receiver::Receiver;
use serde_json::{Value, json};

const THREADS: usize = 8;

/// A paced run's time between two operations of one thread: eight threads
/// make 100 decisions/s, a load the sender keeps up with, to show the lag
/// a subscriber sees when it is not queued behind a backlog.
const PACED: Duration = Duration::from_millis(80);

/// Operations per thread of a paced run, at most (about 4 s).
const PACED_OPS: usize = 50;
const ACCOUNTS: usize = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let ops: usize = if quick {
        20
    } else {
        std::env::var("WEBHOOK_BENCH_OPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let concurrency: usize = std::env::var("WEBHOOK_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WebhookOptions::default().per_endpoint_concurrency);
    println!(
        "{:>13} {:>9} {:>10} {:>12} {:>11} {:>13} {:>13} {:>13}",
        "subscriptions",
        "sender",
        "decisions",
        "decisions/s",
        "delivered",
        "deliveries/s",
        "lag p50 (ms)",
        "lag p99 (ms)"
    );
    let rounds = if quick { 1 } else { 2 };
    for _ in 0..rounds {
        let runs = [
            (0usize, false, None),
            (1, false, None),
            (10, false, None),
            (1, true, None),
            (10, true, None),
            (1, true, Some(PACED)),
            (10, true, Some(PACED)),
        ];
        for (subscriptions, sending, pace) in runs {
            let paced_ops = if pace.is_some() {
                ops.min(PACED_OPS)
            } else {
                ops
            };
            let figures = run(
                &runtime,
                subscriptions,
                sending,
                concurrency,
                paced_ops,
                pace,
            )?;
            println!(
                "{:>13} {:>9} {:>10} {:>12.0} {:>11} {:>13.0} {:>13.1} {:>13.1}",
                subscriptions,
                match (sending, pace) {
                    (false, _) => "off",
                    (true, None) => "on",
                    (true, Some(_)) => "on,paced",
                },
                figures.decisions,
                figures.per_second,
                figures.delivered,
                figures.deliveries_per_second,
                figures.lag_p50_ms,
                figures.lag_p99_ms
            );
        }
    }
    Ok(())
}

struct Figures {
    decisions: usize,
    per_second: f64,
    delivered: usize,
    deliveries_per_second: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
}

fn step(host: &Host, value: &Value) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    Ok(match parse_request(value)? {
        ParsedRequest::State(s) => {
            host.sync(instant::now(), s, value.clone())?;
            None
        }
        ParsedRequest::Operation(op) => Some(host.execute(instant::now(), op)?.seq),
    })
}

/// One run: `subscriptions` that want every event, the sender running or
/// not (without it, what is measured is the outbox's cost alone: the
/// deliveries written with each decision).
fn run(
    runtime: &tokio::runtime::Runtime,
    subscriptions: usize,
    sending: bool,
    concurrency: usize,
    ops: usize,
    pace: Option<Duration>,
) -> Result<Figures, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let host = Arc::new(Host::open(
        dir.path().join("bench.db"),
        HostOptions::default(),
    )?);
    for n in 0..ACCOUNTS {
        let account = format!("acct{n}");
        for value in [
            json!({"op": "account", "id": account, "policy": "celigo", "plan": "paid",
                   "environments": [{"id": "prod", "kind": "production"}]}),
            json!({"op": "user", "account": account, "id": "ada", "email": "ada@x.test", "role": "owner"}),
            json!({"op": "grant", "account": account, "actor": "ada", "environment": "prod",
                   "scope": {"level": "admin"}, "expires_in": {"days": 30}}),
        ] {
            step(&host, &value)?;
        }
    }
    let receiver = Receiver::start();
    for _ in 0..subscriptions {
        host.add_webhook(
            instant::now(),
            Owner::Vendor("celigo".into()),
            &receiver.url,
            &["*".to_owned()],
            "bench",
        )?;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = if sending {
        let _entered = runtime.enter();
        let options = WebhookOptions {
            // The receiver is on loopback.
            addresses: chaperone::webhook::Addresses::Any,
            per_endpoint_concurrency: concurrency,
            ..Default::default()
        };
        Some(host.start_webhooks(options, async {
            let _ = stopped.await;
        })?)
    } else {
        None
    };
    let started = Instant::now();
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                for i in 0..ops {
                    if let Some(pace) = pace {
                        std::thread::sleep(pace);
                    }
                    let account = format!("acct{}", (t * 8 + i % 8) % ACCOUNTS);
                    let act = json!({"op": "act", "account": account, "agent": "sam@celigo.com",
                                     "action": {"name": "flow.read", "environment": "prod"}});
                    if let Err(error) = step(&host, &act) {
                        eprintln!("act failed: {error}");
                    }
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.join();
    }
    let elapsed = started.elapsed();
    let decisions = THREADS * ops;
    let expected = if sending {
        decisions * subscriptions
    } else {
        0
    };
    let got = receiver.wait_for(expected, Duration::from_secs(300));
    let drained = started.elapsed();
    let _ = stop.send(());
    if let Some(worker) = worker {
        runtime.block_on(worker.join())?;
    }
    let mut lags: Vec<f64> = got
        .iter()
        .filter_map(|event| {
            let recorded = event.json().pointer("/record/time_ms")?.as_i64()?;
            let arrived =
                i64::try_from(event.at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
            Some((arrived - recorded) as f64)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Figures {
        decisions,
        per_second: decisions as f64 / elapsed.as_secs_f64(),
        delivered: got.len(),
        deliveries_per_second: got.len() as f64 / drained.as_secs_f64(),
        lag_p50_ms: at(0.5),
        lag_p99_ms: at(0.99),
    })
}
