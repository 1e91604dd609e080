//! Latency of one policy evaluation with a fresh, fuel-limited instance:
//! the per-request cost of the sandbox.
//!
//! `cargo bench -p chaperone --bench evaluate` prints p50/p90/p99 per
//! operation over many evaluations of a realistic Celigo-sized request
//! (two environments, eight integrations, six users, two grants).

use std::time::{Duration, Instant};

use chaperone::builtin;
use chaperone_model::OperationKind;
use chaperone_runtime::probe::sample_request;
use chaperone_runtime::{EntryPoint, Limits, Runtime};

/// The allocator the `chaperone` binary uses (see `main.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUP: usize = 2_000;
const SAMPLES: usize = 50_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // and expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let samples = if quick { 200 } else { SAMPLES };
    // Any other argument names a case to run (all of them if none).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runtime = Runtime::new(Limits::default())?;
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "evaluation", "p50", "p90", "p99", "mean", "fuel"
    );
    let mut cases = Vec::new();
    for builtin in [builtin::CELIGO, builtin::XENTRAL] {
        let module = runtime.load(builtin.bytes)?;
        for kind in [
            OperationKind::Act,
            OperationKind::Grant,
            OperationKind::CreateServiceAccount,
        ] {
            if module.handles(kind) {
                let name = format!(
                    "{} {}",
                    builtin.vendor,
                    chaperone_runtime::probe::operation_name(kind, None)
                );
                cases.push((
                    name,
                    module.clone(),
                    sample_request(builtin.vendor, kind, None),
                    EntryPoint::Fastest,
                ));
            }
        }
    }
    // The floor: the same act against an account with nothing in it, so
    // the fixed cost (store, instance, call) shows apart from the cost of
    // passing a realistic snapshot.
    let celigo = runtime.load(builtin::CELIGO.bytes)?;
    let mut empty = sample_request("celigo", OperationKind::Act, None);
    empty.account.users.clear();
    empty.account.grants.clear();
    empty.account.service_accounts.clear();
    empty.account.invitations.clear();
    empty.account.entries.clear();
    empty.account.settings.clear();
    for env in &mut empty.account.environments {
        env.integrations.clear();
    }
    cases.push((
        "celigo act (empty account)".into(),
        celigo.clone(),
        empty,
        EntryPoint::Fastest,
    ));
    // The same act with the request passed as typed values (`evaluate`)
    // instead of packed (`evaluate-packed`).
    cases.push((
        "celigo act (typed entry)".into(),
        celigo,
        sample_request("celigo", OperationKind::Act, None),
        EntryPoint::Typed,
    ));
    {
        for (name, module, request, entry) in cases {
            if !filters.is_empty() && !filters.contains(&name) {
                continue;
            }
            let mut fuel = 0;
            for _ in 0..WARMUP.min(samples) {
                fuel = runtime.evaluate_with(&module, &request, entry)?.fuel_used;
            }
            let mut times = Vec::with_capacity(samples);
            let started = Instant::now();
            for _ in 0..samples {
                let t = Instant::now();
                let evaluation = runtime.evaluate_with(&module, &request, entry)?;
                times.push(t.elapsed());
                std::hint::black_box(evaluation);
            }
            let total = started.elapsed();
            times.sort_unstable();
            let pct = |p: usize| {
                times
                    .get(times.len() * p / 100)
                    .copied()
                    .unwrap_or_default()
            };
            let mean = total / u32::try_from(samples).unwrap_or(u32::MAX);
            println!(
                "{:<32} {:>9} {:>9} {:>9} {:>9} {:>10}",
                name,
                micros(pct(50)),
                micros(pct(90)),
                micros(pct(99)),
                micros(mean),
                fuel
            );
        }
    }
    if filters.is_empty() || filters.iter().any(|f| "load".contains(f.as_str())) {
        load(quick)?;
    }
    Ok(())
}

/// Loading a module in a fresh runtime (as a process starting does): from
/// its `.wasm` (checks, compiling, `describe()`), and from the compile
/// cache a previous process filled.
fn load(quick: bool) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let runs = if quick { 1 } else { 5 };
    for builtin in [builtin::CELIGO, builtin::XENTRAL] {
        for cached in [false, true] {
            let mut times = Vec::new();
            for _ in 0..runs {
                let cache = match cached {
                    true => Some(chaperone_runtime::CompileCache::open(dir.path())?),
                    false => None,
                };
                let runtime = Runtime::with_cache(Limits::default(), cache)?;
                let t = Instant::now();
                let module = runtime.load(builtin.bytes)?;
                times.push(t.elapsed());
                if cached && !module.from_cache() {
                    // The first load fills the cache: not a cached load.
                    times.pop();
                }
            }
            times.sort_unstable();
            let median = times.get(times.len() / 2).copied().unwrap_or_default();
            let name = format!(
                "load {} {}",
                builtin.vendor,
                if cached {
                    "from the compile cache"
                } else {
                    "from .wasm"
                }
            );
            println!(
                "{name:<32} {:>8.1}ms (median of {})",
                median.as_secs_f64() * 1e3,
                times.len()
            );
        }
    }
    Ok(())
}

fn micros(d: Duration) -> String {
    format!("{:.2}µs", d.as_secs_f64() * 1e6)
}
