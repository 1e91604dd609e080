//! Decisions per second through the whole host: evaluate in a fresh
//! sandboxed instance + durable audit record + effects, group-committed.
//!
//! `cargo bench -p chaperone --bench host` runs a mix of 20% `grant` and 80%
//! `act` operations from 1, 8 and 64 client threads, each thread on its own
//! Celigo account (different customers, as in production), on a store in a
//! temporary directory at `synchronous=FULL`. Grants last an hour and ten
//! minutes pass between operations, so acts also write `expire` records.

use std::sync::Arc;
use std::time::Instant;

use chaperone::service::{Host, HostOptions, ParsedRequest, parse_request};
use serde_json::{Value, json};

/// The allocator the `chaperone` binary uses (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START: i64 = 1_767_258_000_000; // 2026-01-01T09:00:00Z

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let dir = tempfile::tempdir()?;
    let host = Arc::new(Host::open(
        dir.path().join("bench.db"),
        HostOptions::default(),
    )?);
    println!(
        "{:>8} {:>10} {:>12} {:>14}",
        "threads", "decisions", "seconds", "decisions/s"
    );
    for (threads, per_thread) in [(1usize, 300usize), (8, 1_000), (64, 250)] {
        let per_thread = if quick {
            per_thread.min(20)
        } else {
            per_thread
        };
        for t in 0..threads {
            setup(&host, &format!("acct-{threads}-{t}"))?;
        }
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let host = host.clone();
                let account = format!("acct-{threads}-{t}");
                std::thread::spawn(move || -> Result<(), String> {
                    for i in 0..per_thread {
                        let value = if i % 5 == 0 {
                            grant(&account)
                        } else {
                            act(&account)
                        };
                        let ParsedRequest::Operation(op) =
                            parse_request(&value).map_err(|e| e.to_string())?
                        else {
                            return Err("not an operation".into());
                        };
                        // Ten minutes pass between a thread's operations and
                        // grants last an hour, so each account holds a
                        // handful of live grants, and acts record the
                        // expiries they notice, as in production.
                        let at = START + i64::try_from(i).unwrap_or(0) * 600_000;
                        host.execute(at, op).map_err(|e| e.to_string())?;
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| "a worker panicked")??;
        }
        let seconds = started.elapsed().as_secs_f64();
        let total = threads * per_thread;
        println!(
            "{threads:>8} {total:>10} {seconds:>12.3} {:>14.0}",
            total as f64 / seconds
        );
    }
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

fn grant(account: &str) -> Value {
    json!({"op": "grant", "account": account, "actor": "cy", "environment": "prod",
           "scope": {"integrations": {"shopify-sync": "manage"}}, "expires_in": {"hours": 1}})
}

fn act(account: &str) -> Value {
    json!({"op": "act", "account": account, "agent": "sam@celigo.com",
           "action": {"name": "flow.run", "environment": "prod", "integration": "shopify-sync"}})
}
