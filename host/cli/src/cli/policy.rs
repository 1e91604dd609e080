//! `chaperone policy inspect|check|export`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde::Serialize;

use chaperone::builtin;
use chaperone_runtime::probe::{self, operation_name};
use chaperone_runtime::{self as runtime, Limits, ModuleDigest, Runtime};

use super::exit;

/// The policy subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a module's digest, vendor id, version, operations, exports,
    /// imports and size.
    Inspect(InspectArgs),
    /// Probe a module: no imports, exports match, deterministic, fuel-bounded.
    Check(CheckArgs),
    /// Write a built-in module's bytes to a file.
    Export(ExportArgs),
    /// Install a vendor's module into a store's registry (checked first,
    /// as `policy check` does; audited).
    Install(super::registry::InstallArgs),
    /// List the modules installed in a store (`*`: active).
    List(super::registry::ListArgs),
    /// Make an installed module its vendor's active one (audited; a running
    /// server picks it up within half a second).
    Activate(super::registry::ActivateArgs),
    /// Make the module active before a vendor's current one active again.
    Rollback(super::registry::RollbackArgs),
    /// Re-decide a vendor's recorded decisions with a candidate module and
    /// list those that would change (exit 1 if any), before activating it.
    Diff(super::registry::DiffArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Inspect(args) => args.run(),
            Command::Check(args) => args.run(),
            Command::Export(args) => args.run(),
            Command::Install(args) => args.run(),
            Command::List(args) => args.run(),
            Command::Activate(args) => args.run(),
            Command::Rollback(args) => args.run(),
            Command::Diff(args) => args.run(),
        }
    }
}

/// Arguments of `policy inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The module (a component, or a core module built with the SDK).
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Inspection {
    file: String,
    digest: String,
    size: usize,
    format: Option<runtime::ModuleFormat>,
    vendor: Option<String>,
    version: Option<String>,
    operations: Vec<String>,
    exports: Vec<String>,
    imports: Vec<String>,
    /// What it holds by the measures compiling is bounded by.
    compile_size: Option<runtime::CompileSize>,
    /// The limits on those.
    compile_limits: runtime::CompileSize,
    /// Milliseconds to load it (checks, compiling, `describe()`).
    load_ms: Option<f64>,
    error: Option<String>,
}

impl InspectArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let bytes = super::read_module(&self.file)?;
        let mut inspection = Inspection {
            file: self.file.display().to_string(),
            digest: ModuleDigest::of(&bytes).to_hex(),
            size: bytes.len(),
            format: None,
            vendor: None,
            version: None,
            operations: Vec::new(),
            exports: Vec::new(),
            imports: Vec::new(),
            compile_size: None,
            compile_limits: runtime::COMPILE_LIMITS,
            load_ms: None,
            error: None,
        };
        match runtime::survey(&bytes) {
            Ok((format, imports, exports)) => {
                inspection.format = Some(format);
                inspection.imports = imports;
                inspection.exports = exports;
                inspection.compile_size = runtime::measure(&bytes).ok();
            }
            Err(error) => inspection.error = Some(error.to_string()),
        }
        if inspection.error.is_none() {
            let runtime = Runtime::new(Limits::default())?;
            let started = std::time::Instant::now();
            let loaded = runtime.load(&bytes);
            inspection.load_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            match loaded {
                Ok(module) => {
                    let d = module.description();
                    inspection.vendor = Some(d.vendor.clone());
                    inspection.version = Some(d.version.clone());
                    inspection.operations = d
                        .operations
                        .iter()
                        .map(|k| operation_name(*k, None))
                        .filter(|n| !n.starts_with("custom:"))
                        .chain(d.custom_operations.iter().map(|c| format!("custom:{c}")))
                        .collect();
                }
                Err(error) => inspection.error = Some(error.to_string()),
            }
        }
        if self.json {
            println!("{}", serde_json::to_string(&inspection)?);
        } else {
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let list = |v: &[String]| {
                if v.is_empty() {
                    "(none)".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!("file:       {}", inspection.file);
            println!("digest:     blake3:{}", inspection.digest);
            println!("size:       {} bytes", inspection.size);
            let format = match inspection.format {
                Some(runtime::ModuleFormat::Component) => "component",
                Some(runtime::ModuleFormat::CoreModule) => "core module (componentized at load)",
                None => "-",
            };
            println!("format:     {format}");
            println!("vendor:     {}", or_dash(&inspection.vendor));
            println!("version:    {}", or_dash(&inspection.version));
            println!("operations: {}", list(&inspection.operations));
            println!("exports:    {}", list(&inspection.exports));
            println!("imports:    {}", list(&inspection.imports));
            if let Some(size) = &inspection.compile_size {
                let l = &inspection.compile_limits;
                println!(
                    "compiles:   {} of {} functions, {} of {} code bytes (largest function {} of {}), \
                     {} of {} locals, {} of {} data segments ({} of {} bytes), {} of {} globals, \
                     {} of {} element segments",
                    size.functions,
                    l.functions,
                    size.code_bytes,
                    l.code_bytes,
                    size.function_bytes,
                    l.function_bytes,
                    size.locals,
                    l.locals,
                    size.data_segments,
                    l.data_segments,
                    size.data_bytes,
                    l.data_bytes,
                    size.globals,
                    l.globals,
                    size.element_segments,
                    l.element_segments
                );
            }
            if let Some(ms) = inspection.load_ms {
                println!("load:       {ms:.1} ms (checks, compiling, describe())");
            }
            if let Some(error) = &inspection.error {
                println!("error:      {error}");
            }
        }
        Ok(exit(inspection.error.is_none()))
    }
}

/// Arguments of `policy check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The module (a component, or a core module built with the SDK).
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl CheckArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let bytes = super::read_module(&self.file)?;
        let report = probe::check(&bytes, &Limits::default(), &chaperone::service::record_fits)?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            for probe in &report.probes {
                let fuel = probe
                    .fuel_used
                    .map(|f| format!(" ({f} fuel)"))
                    .unwrap_or_default();
                let status = if probe.ok { "ok    " } else { "FAILED" };
                println!("{status} {}: {}{fuel}", probe.name, probe.detail);
            }
            let failed = report.probes.iter().filter(|p| !p.ok).count();
            println!(
                "{} passed, {failed} failed",
                report.probes.len().saturating_sub(failed)
            );
        }
        Ok(exit(report.passed()))
    }
}

/// Arguments of `policy export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The built-in module: `celigo` or `xentral`.
    pub vendor: String,
    /// Where to write it.
    #[arg(long)]
    pub out: PathBuf,
}

impl ExportArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let Some(module) = builtin::by_vendor(&self.vendor) else {
            let known: Vec<&str> = builtin::ALL.iter().map(|b| b.vendor).collect();
            eprintln!(
                "error: no built-in module `{}`; the built-in modules are {}",
                self.vendor,
                known.join(", ")
            );
            return Ok(ExitCode::from(super::EXIT_USAGE));
        };
        std::fs::write(&self.out, module.bytes)
            .with_context(|| format!("cannot write `{}`", self.out.display()))?;
        eprintln!(
            "wrote {} ({} bytes, blake3:{})",
            self.out.display(),
            module.bytes.len(),
            ModuleDigest::of(module.bytes)
        );
        Ok(ExitCode::SUCCESS)
    }
}
