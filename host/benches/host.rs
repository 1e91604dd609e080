//! Decisions per second through the whole host: evaluate in a fresh
//! sandboxed instance + durable audit record + effects, group-committed.
//!
//! `cargo bench -p chaperone --bench host` runs `grant` and `act` operations
//! on Celigo accounts, on a store in a temporary directory at
//! `synchronous=FULL`, in two shapes:
//!
//! - `spread`: 1, 8 and 64 client threads, each on its own account
//!   (different customers, as in production);
//! - `hot`: 8 and 64 client threads all on ONE account (a busy customer).
//!
//! and two mixes: 20% grants lasting an hour, and 1% grants lasting a day.
//! An account sees ten minutes pass between its operations, so either way
//! it holds a grant or two, and acts also write `expire` records. With 20%
//! grants about two operations in five change the account's state (each
//! grant, and the act that records its expiry); such decisions on one
//! account go one at a time, each reading what the one before wrote, while
//! decisions that change nothing go in parallel. `refused` counts
//! operations the host would not carry out because the account was
//! contended; they are not counted as decisions.
//! `cargo bench -p chaperone --bench host` without `--bench` (as `cargo
//! test` runs it) does a few operations per thread only.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Instant;

use chaperone::service::{Host, HostOptions, ParsedRequest, ServiceError, parse_request};
use serde_json::{Value, json};

/// The allocator the `chaperone` binary uses (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START: i64 = 1_767_258_000_000; // 2026-01-01T09:00:00Z

/// Time between two operations of one account: ten minutes.
const STEP_MS: i64 = 600_000;

/// Which operations a thread sends: a grant every `grant_every`-th, lasting
/// `grant_hours`; acts otherwise.
#[derive(Clone, Copy)]
struct Mix {
    grant_every: usize,
    grant_hours: u32,
}

const TWENTY_PERCENT: Mix = Mix {
    grant_every: 5,
    grant_hours: 1,
};

const ONE_PERCENT: Mix = Mix {
    grant_every: 100,
    grant_hours: 24,
};

/// How the client threads share accounts.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Each thread on its own account.
    Spread,
    /// Every thread on one account.
    Hot,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir()?;
    let host = Arc::new(Host::open(
        dir.path().join("bench.db"),
        HostOptions::default(),
    )?);
    println!(
        "{:>7} {:>7} {:>8} {:>9} {:>10} {:>8} {:>10} {:>12}",
        "shape", "grants", "threads", "accounts", "decisions", "refused", "seconds", "decisions/s"
    );
    let runs = [
        (Shape::Spread, TWENTY_PERCENT, 1usize, 300usize),
        (Shape::Spread, TWENTY_PERCENT, 8, 1_000),
        (Shape::Spread, TWENTY_PERCENT, 64, 250),
        (Shape::Hot, TWENTY_PERCENT, 8, 1_000),
        (Shape::Hot, TWENTY_PERCENT, 64, 250),
        (Shape::Spread, ONE_PERCENT, 64, 250),
        (Shape::Hot, ONE_PERCENT, 64, 250),
    ];
    for (shape, mix, threads, per_thread) in runs {
        let per_thread = if quick {
            per_thread.min(20)
        } else {
            per_thread
        };
        run(&host, shape, mix, threads, per_thread)?;
    }
    Ok(())
}

fn run(
    host: &Arc<Host>,
    shape: Shape,
    mix: Mix,
    threads: usize,
    per_thread: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let (name, accounts) = match shape {
        Shape::Spread => ("spread", threads),
        Shape::Hot => ("hot", 1),
    };
    let percent = 100 / mix.grant_every;
    let prefix = format!("{name}-{percent}-{threads}");
    for a in 0..accounts {
        setup(host, &format!("{prefix}-{a}"))?;
    }
    // One clock per account: each operation takes the account's next
    // instant, ten minutes after the one before, so both shapes see the
    // same account history (a grant or two live).
    let clocks: Arc<Vec<AtomicI64>> = Arc::new((0..accounts).map(|_| AtomicI64::new(0)).collect());
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let host = host.clone();
            let clocks = clocks.clone();
            let refused = refused.clone();
            let a = if shape == Shape::Hot { 0 } else { t };
            let account = format!("{prefix}-{a}");
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0..per_thread {
                    // Threads' grants staggered: on one account they
                    // come one every so often, not all at once.
                    let value = if (i + t) % mix.grant_every == 0 {
                        grant(&account, mix.grant_hours)
                    } else {
                        act(&account)
                    };
                    let ParsedRequest::Operation(op) =
                        parse_request(&value).map_err(|e| e.to_string())?
                    else {
                        return Err("not an operation".into());
                    };
                    let tick = clocks
                        .get(a)
                        .map_or(0, |c| c.fetch_add(1, Ordering::Relaxed));
                    let at = START + tick * STEP_MS;
                    match host.execute(at, op) {
                        Ok(_) => {}
                        Err(ServiceError::Contended(_)) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let refused = refused.load(Ordering::Relaxed);
    let decided = threads * per_thread - refused;
    println!(
        "{name:>7} {:>7} {threads:>8} {accounts:>9} {decided:>10} {refused:>8} {seconds:>10.3} {:>12.0}",
        format!("{percent}%"),
        decided as f64 / seconds
    );
    Ok(())
}

fn setup(host: &Host, account: &str) -> Result<(), Box<dyn std::error::Error>> {
    let steps = [
        json!({"op": "account", "id": account, "policy": "celigo", "plan": "paid",
               "environments": [{"id": "prod", "kind": "production"}, {"id": "sandbox", "kind": "sandbox"}],
               "settings": {"allow_non_admin_grants": true}}),
        json!({"op": "user", "account": account, "id": "ada", "email": "ada@acme.test", "role": "admin"}),
        json!({"op": "user", "account": account, "id": "cy", "email": "cy@acme.test", "role": "manage",
               "access": {"shopify-sync": "manage", "hubspot-leads": "monitor"}}),
        json!({"op": "integration", "account": account, "environment": "prod", "id": "shopify-sync"}),
        json!({"op": "integration", "account": account, "environment": "prod", "id": "hubspot-leads"}),
        json!({"op": "integration", "account": account, "environment": "prod", "id": "netsuite-invoices"}),
    ];
    for step in steps {
        if let ParsedRequest::State(state) = parse_request(&step)? {
            host.sync(START, state, step)?;
        }
    }
    Ok(())
}

fn grant(account: &str, hours: u32) -> Value {
    json!({"op": "grant", "account": account, "actor": "cy", "environment": "prod",
           "scope": {"integrations": {"shopify-sync": "manage"}}, "expires_in": {"hours": hours}})
}

fn act(account: &str) -> Value {
    json!({"op": "act", "account": account, "agent": "sam@celigo.com",
           "action": {"name": "flow.run", "environment": "prod", "integration": "shopify-sync"}})
}
