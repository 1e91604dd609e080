//! How long the sandbox takes to stop a module that spins, for every way
//! to spin (`chaperone_tests::modules::SPINS`), while other threads keep
//! the machine's other cores busy.
//!
//! ```text
//! cargo bench -p chaperone-tests --bench stop
//! ```
//!
//! Per way to spin: p50, p99 and max of the wall-clock time from the call to
//! the refusal, the bound that stopped it (fuel is the one that should: the
//! deadline is a backstop), the fuel it used and the nanoseconds per unit
//! of fuel at p50. `STOP_BENCH_RUNS` (default 30) sets the evaluations per
//! way, `STOP_BENCH_BUSY` (default: cores - 1) the busy threads, and
//! `STOP_BENCH_DEADLINE_MS` the deadline (default: the host's), e.g. a
//! large one to see what the fuel alone costs. Without `--bench` (as
//! `cargo test --benches` runs it) each way runs twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chaperone_model::OperationKind;
use chaperone_runtime::probe::sample_request;
use chaperone_runtime::{EvalError, Limits, Runtime};
use chaperone_tests::modules::{SPINS, spin_module};

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick {
        2
    } else {
        env_usize("STOP_BENCH_RUNS").unwrap_or(30)
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let busy = env_usize("STOP_BENCH_BUSY").unwrap_or(cores.saturating_sub(1));
    let mut limits = Limits::default();
    if let Some(ms) = env_usize("STOP_BENCH_DEADLINE_MS") {
        limits.deadline = Duration::from_millis(u64::try_from(ms)?);
    }
    let runtime = Runtime::new(limits.clone())?;
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..busy)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ 1);
                    }
                }
                x
            })
        })
        .collect();
    println!(
        "fuel {} deadline {:?}, {busy} busy thread(s), {runs} runs each",
        limits.fuel, limits.deadline
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>11} {:>8}  stopped by",
        "spin", "p50", "p99", "max", "fuel", "ns/fuel"
    );
    let request = sample_request("evil", OperationKind::Act, None);
    let mut worst = Duration::ZERO;
    for (name, _, _) in SPINS {
        let bytes = spin_module(name).ok_or("no such spin")?;
        let module = runtime.load(&bytes)?;
        let mut times = Vec::with_capacity(runs);
        let mut stopped_by = std::collections::BTreeMap::<String, usize>::new();
        for _ in 0..runs {
            let started = Instant::now();
            let outcome = runtime.evaluate(&module, &request);
            times.push(started.elapsed());
            let why = match outcome {
                Err(EvalError::FuelExhausted(_)) => "fuel".to_owned(),
                Err(EvalError::Deadline(_)) => "DEADLINE".to_owned(),
                Err(EvalError::MemoryLimit(_)) => "memory".to_owned(),
                Err(EvalError::StackOverflow) => "stack".to_owned(),
                Err(other) => format!("{other}"),
                Ok(_) => "returned".to_owned(),
            };
            *stopped_by.entry(why).or_default() += 1;
        }
        times.sort();
        let at = |q: f64| {
            let i = ((times.len() as f64 - 1.0) * q).round() as usize;
            times.get(i).copied().unwrap_or_default()
        };
        let max = times.last().copied().unwrap_or_default();
        worst = worst.max(at(0.99));
        let why: Vec<String> = stopped_by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "{:<20} {:>9.1?} {:>9.1?} {:>9.1?} {:>11} {:>8.2}  {}",
            name,
            at(0.5),
            at(0.99),
            max,
            limits.fuel,
            at(0.5).as_nanos() as f64 / limits.fuel as f64,
            why.join(", ")
        );
    }
    stop.store(true, Ordering::Relaxed);
    for burner in burners {
        let _ = burner.join();
    }
    println!("worst p99: {worst:?}");
    Ok(())
}
