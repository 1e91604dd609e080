//! Latency of one policy evaluation with a fresh, fuel-limited instance:
//! the per-request cost of the sandbox.
//!
//! `cargo bench -p chaperone --bench evaluate` prints p50/p90/p99 per
//! operation over many evaluations of a realistic Celigo-sized request
//! (two environments, eight integrations, six users, two grants).

use std::time::{Duration, Instant};

use chaperone::builtin;
use chaperone::probe::sample_request;
use chaperone::runtime::wit::OperationKind;
use chaperone::runtime::{Limits, Runtime};

const WARMUP: usize = 2_000;
const SAMPLES: usize = 50_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let samples = if quick { 200 } else { SAMPLES };
    let runtime = Runtime::new(Limits::default())?;
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "evaluation", "p50", "p90", "p99", "mean", "fuel"
    );
    for builtin in [builtin::CELIGO, builtin::XENTRAL] {
        let module = runtime.load(builtin.bytes)?;
        for kind in [OperationKind::Act, OperationKind::Grant, OperationKind::CreateServiceAccount] {
            if !module.handles(kind) {
                continue;
            }
            let request = sample_request(builtin.vendor, kind, None);
            let mut fuel = 0;
            for _ in 0..WARMUP.min(samples) {
                fuel = runtime.evaluate(&module, &request)?.fuel_used;
            }
            let mut times = Vec::with_capacity(samples);
            let started = Instant::now();
            for _ in 0..samples {
                let t = Instant::now();
                let evaluation = runtime.evaluate(&module, &request)?;
                times.push(t.elapsed());
                std::hint::black_box(evaluation);
            }
            let total = started.elapsed();
            times.sort_unstable();
            let pct = |p: usize| times.get(times.len() * p / 100).copied().unwrap_or_default();
            let mean = total / u32::try_from(samples).unwrap_or(u32::MAX);
            println!(
                "{:<28} {:>9} {:>9} {:>9} {:>9} {:>10}",
                format!("{} {}", builtin.vendor, chaperone::probe::operation_name(kind, None)),
                micros(pct(50)),
                micros(pct(90)),
                micros(pct(99)),
                micros(mean),
                fuel
            );
        }
    }
    Ok(())
}

fn micros(d: Duration) -> String {
    format!("{:.2}µs", d.as_secs_f64() * 1e6)
}
