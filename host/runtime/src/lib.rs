//! The sandbox: loads policy modules, pins them by digest, and evaluates each
//! request in a fresh, fuel- and time-limited instance with a memory cap.
//!
//! ```text
//! bytes ─► BLAKE3 digest ─► static checks (no imports, exports present)
//!       ─► componentize a core module ─► compile once per digest ─► InstancePre
//! request ─► fresh Store + instance (pooling allocator, copy-on-write memory)
//!         ─► evaluate-packed() (or evaluate()) under fuel, epoch deadline
//!            and memory cap
//!         ─► decode ─► contract checks ─► Decision
//! ```
//!
//! Modules built with the SDK also export `evaluate-packed`, which takes the
//! request and returns the decision as byte strings (their postcard
//! encodings): passing the typed `request` makes the canonical ABI call into
//! the module once per string and list of the snapshot, which cost more than
//! the rest of an evaluation. Both entries must decide identically (`policy
//! check` probes it). For a core module the host componentized itself, it
//! calls the core module's `evaluate-packed` directly (`core.rs`): the
//! component layer around one core instance is pure overhead there.
//!
//! `CHAPERONE_PERFMAP=1` makes the engine write `/tmp/perf-PID.map`, so that
//! `perf report` names the modules' functions.
//!
//! Architecture invariant: the runtime links nothing into a module. A module
//! that imports anything is refused at load, so a policy cannot read a clock,
//! randomness or any I/O: `now` is in the request.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, Instance, Linker, TypedFunc};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Module, OptLevel, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap,
};

mod bindings;
mod cache;
mod contract;
mod convert;
mod core;
mod error;
mod load;
mod packed;
mod pricing;
pub mod probe;

pub use cache::CompileCache;
/// The bounds a decision must keep (beyond its WIT types); a decision that
/// breaks one fails closed.
pub use contract::{
    DECISION_COST, EFFECT_COST, MAX_DECISION_BYTES, MAX_EFFECTS, MAX_MESSAGE_LEN, MAX_RULE_LEN,
    MAX_RULES, MAX_VALUE_LEN, STRING_COST, decision_cost,
};
pub use error::{EvalError, LoadError, RuntimeError};
pub use load::{
    COMPILE_LIMITS, CompileSize, ModuleFormat, REQUIRED_EXPORTS, measure, survey, within_limits,
};

/// Decodes what a module's `evaluate-packed` returned, as an evaluation
/// does: bounded as it reads ([`MAX_DECISION_BYTES`]), a limit broken
/// while decoding as [`EvalError::Contract`], bytes that are not a decision
/// as [`EvalError::BadOutput`]. For tools and fuzzing; an evaluation then
/// also checks the decision with [`check_decision`].
pub fn decode_packed_decision(bytes: &[u8]) -> Result<model::Decision, EvalError> {
    packed::decode_decision(bytes).map_err(EvalError::from)
}

/// Checks a decision against the interface contract and the request it
/// answers, as an evaluation does; the error says what is wrong.
pub fn check_decision(decision: &model::Decision, request: &model::Request) -> Result<(), String> {
    contract::check_decision(decision, request)
}

/// The packed encoding of a request, as `evaluate-packed` receives it.
pub fn encode_packed_request(request: &model::Request) -> Vec<u8> {
    packed::encode(request)
}

/// The interface types, generated from `sdk/wit` (package
/// `chaperone:policy@0.1.0`). They stay inside the runtime: its callers
/// speak [`chaperone_model`], and `convert` translates at the edge.
mod wit {
    pub use super::bindings::chaperone::policy::types::*;
}

use chaperone_model as model;

/// The BLAKE3 digest of a module's bytes: the module's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleDigest(pub [u8; 32]);

impl ModuleDigest {
    /// The digest of these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ModuleDigest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(ModuleDigest(out))
    }
}

impl fmt::Display for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModuleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleDigest({})", self.to_hex())
    }
}

/// The sandbox's limits, per evaluation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Fuel one evaluation may use: about a unit per instruction, more for
    /// costly ones (see `pricing`). The bound that decides.
    pub fuel: u64,
    /// Wall-clock backstop for one evaluation, far above what the fuel can
    /// buy: a module stopped by it is a pricing error, logged as such.
    pub deadline: Duration,
    /// The most linear memory an instance may have, in bytes.
    pub memory_bytes: usize,
    /// How many instances may be alive at once (the pool's size).
    pub max_instances: u32,
    /// The largest module [`Runtime::load`] accepts, in bytes. Compiling is
    /// the one step of loading that no fuel meters, so its input is bounded;
    /// the built-in modules are about a hundred kilobytes.
    pub module_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 20_000_000,
            deadline: Duration::from_secs(1),
            memory_bytes: 32 << 20,
            max_instances: 256,
            module_bytes: 16 << 20,
        }
    }
}

/// The most core instances one component may instantiate (wit-component
/// adds small shim modules to some; one memory in all).
const CORE_INSTANCES_PER_COMPONENT: u32 = 4;

/// How often the epoch advances; the deadline is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How much of each pooled memory is reset in place (only its dirty pages,
/// found with Linux's `PAGEMAP_SCAN` where available) instead of being
/// unmapped: a policy's whole working set, so a fresh instance costs no page
/// faults and no TLB shootdowns.
const KEEP_RESIDENT: usize = 2 << 20;

/// Loads and runs policy modules. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<Sandbox>,
    core_linker: wasmtime::Linker<Sandbox>,
    limits: Limits,
    modules: RwLock<HashMap<ModuleDigest, Arc<PolicyModule>>>,
    /// Where compiled modules are kept across processes, if anywhere.
    cache: Option<CompileCache>,
    slots: Slots,
    _ticker: Ticker,
}

/// A loaded, compiled module, ready to instantiate.
pub struct PolicyModule {
    digest: ModuleDigest,
    bytes: Arc<[u8]>,
    format: ModuleFormat,
    size: usize,
    exports: Vec<String>,
    description: model::Description,
    /// Whether loading took its compiled code from the [`CompileCache`].
    from_cache: bool,
    /// Whether the module exports `evaluate-packed` (checked at load).
    packed: bool,
    /// The component the module is, or was turned into; compiled at load
    /// unless the core module is called directly, then on first use of the
    /// typed entry (`policy check` compares the two): each module is
    /// compiled once on the path that serves it.
    component: Arc<[u8]>,
    compiled: OnceLock<Result<Compiled, String>>,
    /// `evaluate-packed` called on the core module directly, for a core
    /// module the host componentized (see `core`).
    core: Option<core::CoreEntry>,
}

/// A module compiled as a component.
struct Compiled {
    pre: bindings::PolicyPre<Sandbox>,
    /// `evaluate-packed`, when the module exports it.
    packed: Option<ComponentExportIndex>,
}

impl fmt::Debug for PolicyModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyModule")
            .field("digest", &self.digest)
            .field("vendor", &self.description.vendor)
            .field("version", &self.description.version)
            .finish_non_exhaustive()
    }
}

impl PolicyModule {
    /// The BLAKE3 digest of the bytes it was loaded from.
    pub fn digest(&self) -> ModuleDigest {
        self.digest
    }

    /// What `describe()` returned.
    pub fn description(&self) -> &model::Description {
        &self.description
    }

    /// Whether `describe()` lists this operation.
    pub fn handles(&self, kind: model::OperationKind) -> bool {
        self.description.operations.contains(&kind)
    }

    /// The bytes it was loaded from (what its digest names).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes it was loaded from, shared (kept beside its records).
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        Arc::clone(&self.bytes)
    }

    /// Whether `describe()` lists this custom operation.
    pub fn handles_custom(&self, name: &str) -> bool {
        self.handles(model::OperationKind::Custom)
            && self.description.custom_operations.iter().any(|c| c == name)
    }

    /// Whether the bytes were a component or a core module.
    pub fn format(&self) -> ModuleFormat {
        self.format
    }

    /// The size of the bytes it was loaded from.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The top-level export names.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// Whether the module has been compiled as a component: at load for a
    /// component or a core module without `evaluate-packed`; for one with
    /// it, only once the typed entry is used (its own export serves every
    /// evaluation otherwise, and a module is compiled once).
    pub fn compiled_as_component(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// Whether loading took its compiled code from the [`CompileCache`]
    /// instead of compiling it.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Whether the module exports `evaluate-packed`, which the host then
    /// calls instead of `evaluate`.
    pub fn packed(&self) -> bool {
        self.packed
    }

    /// Whether the host calls `evaluate-packed` on the core module directly
    /// (a core module it componentized itself).
    pub fn direct(&self) -> bool {
        self.core.is_some()
    }
}

/// `evaluate-packed`'s type, checked once at load.
type PackedFunc = TypedFunc<(Vec<u8>,), (Vec<u8>,)>;

/// How to hand a request to a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// `evaluate-packed` when the module exports it, else `evaluate`.
    Fastest,
    /// `evaluate`, with the request as typed values.
    Typed,
}

/// A decision and what it cost.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The decision, checked against the interface contract.
    pub decision: model::Decision,
    /// Fuel used.
    pub fuel_used: u64,
    /// Wall-clock time, instantiation included.
    pub elapsed: Duration,
}

impl Runtime {
    /// A runtime with these limits.
    pub fn new(limits: Limits) -> Result<Self, RuntimeError> {
        Runtime::with_cache(limits, None)
    }

    /// A runtime with these limits that keeps what it compiles in `cache`
    /// and loads it from there next time (in this process or another).
    pub fn with_cache(limits: Limits, cache: Option<CompileCache>) -> Result<Self, RuntimeError> {
        let mut pool = PoolingAllocationConfig::new();
        if limits.max_instances == 0 {
            return Err(RuntimeError(
                "`max_instances` must be at least 1: no evaluation could ever run".into(),
            ));
        }
        // One slot per store (see `Slots`), and the pool holds a whole
        // module's instances for every slot: no module can take more of it
        // than its share, whatever the load.
        let per_slot = CORE_INSTANCES_PER_COMPONENT;
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances.saturating_mul(per_slot))
            .total_memories(limits.max_instances)
            .total_tables(limits.max_instances.saturating_mul(per_slot))
            .max_core_instances_per_component(per_slot)
            .max_memories_per_component(1)
            .max_tables_per_component(per_slot)
            .max_memory_size(limits.memory_bytes)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(16 << 10)
            .pagemap_scan(Enabled::Auto);

        let mut config = Config::new();
        config
            .consume_fuel(true)
            .operator_cost(pricing::operator_cost())
            // Nothing a module can observe may depend on the host: NaNs
            // come out with one bit pattern, relaxed SIMD with its
            // deterministic semantics (fused multiply-add, saturating
            // truncation). (wasmtime is built without threads.)
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10)
            .memory_init_cow(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if std::env::var_os("CHAPERONE_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| RuntimeError(format!("{e:#}")))?;
        let linker = Linker::new(&engine);
        let core_linker = wasmtime::Linker::new(&engine);
        let ticker = Ticker::start(engine.clone());
        let slots = Slots::new(limits.max_instances);
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                core_linker,
                limits,
                modules: RwLock::new(HashMap::new()),
                cache,
                slots,
                _ticker: ticker,
            }),
        })
    }

    /// The limits every evaluation runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Loads a module: digest, static checks, compile (once per digest),
    /// `describe()`.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<PolicyModule>, LoadError> {
        let limit = self.inner.limits.module_bytes;
        if bytes.len() > limit {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        let digest = ModuleDigest::of(bytes);
        if let Some(module) = self.cached(&digest) {
            return Ok(module);
        }
        let span = tracing::info_span!("load", digest = %digest, size = bytes.len());
        let _enter = span.enter();
        let checked = load::check(bytes)?;
        let exports_packed = checked.exports.iter().any(|e| e == "evaluate-packed");
        let mut from_cache = false;
        let core = match (checked.format, exports_packed) {
            (ModuleFormat::CoreModule, true) => {
                load::check_packed_type(&checked.component)?;
                let (module, cached) = self.compile_core(&digest, bytes)?;
                from_cache = cached;
                core::CoreEntry::new(&self.inner.core_linker, &module)?
            }
            _ => None,
        };
        let component: Arc<[u8]> = Arc::from(checked.component.as_ref());
        let compiled = OnceLock::new();
        let (description, packed) = match &core {
            Some(core) => (self.describe_core(core)?, true),
            None => {
                let (parts, cached) = self.compile(&digest, &component)?;
                from_cache = cached;
                let description = self.describe(&parts.pre, parts.packed.as_ref())?;
                let packed = parts.packed.is_some();
                let _ = compiled.set(Ok(parts));
                (description, packed)
            }
        };
        contract::check_description(&description).map_err(LoadError::BadDescription)?;
        tracing::debug!(vendor = %description.vendor, version = %description.version, "loaded");
        let module = Arc::new(PolicyModule {
            digest,
            bytes: Arc::from(bytes),
            format: checked.format,
            size: bytes.len(),
            exports: checked.exports,
            description,
            from_cache,
            packed,
            component,
            compiled,
            core,
        });
        let mut modules = self
            .inner
            .modules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(modules.entry(digest).or_insert(module).clone())
    }

    /// The module with this digest, if it was loaded.
    pub fn cached(&self, digest: &ModuleDigest) -> Option<Arc<PolicyModule>> {
        self.inner
            .modules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    /// Evaluates one request in a fresh instance, and checks the decision
    /// against the interface contract and the request's snapshot.
    pub fn evaluate(
        &self,
        module: &PolicyModule,
        request: &model::Request,
    ) -> Result<Evaluation, EvalError> {
        self.evaluate_with(module, request, EntryPoint::Fastest)
    }

    /// [`Runtime::evaluate`] through a chosen entry point (`policy check`
    /// compares the two).
    pub fn evaluate_with(
        &self,
        module: &PolicyModule,
        request: &model::Request,
        entry: EntryPoint,
    ) -> Result<Evaluation, EvalError> {
        let span = tracing::debug_span!(
            "evaluate",
            digest = %module.digest,
            account = %request.account.id,
            fuel_used = tracing::field::Empty,
        );
        let _enter = span.enter();
        let started = Instant::now();
        let packed = match entry {
            EntryPoint::Fastest if module.packed => Some(packed::encode(request)),
            _ => None,
        };
        let compiled = match (&packed, &module.core) {
            (Some(_), Some(_)) => None,
            _ => Some(self.compiled(module)?),
        };
        // Declared before the store, so dropped after it.
        let slot = self.inner.slots.take();
        let mut store = self.store()?;
        let called = match (packed, &module.core, compiled) {
            (Some(bytes), Some(core), _) => {
                let call = core
                    .instantiate(&mut store)
                    .map_err(|e| self.classify(&store, e, true))?;
                call.call(&mut store, &bytes).map(Output::Decided)
            }
            (_, _, None) => {
                return Err(EvalError::Instantiate(
                    "the module was not compiled for this entry".into(),
                ));
            }
            (packed, _, Some(compiled)) => {
                let instance = compiled
                    .pre
                    .instance_pre()
                    .instantiate(&mut store)
                    .map_err(|e| self.classify(&store, e, true))?;
                match (packed, &compiled.packed) {
                    (Some(bytes), Some(index)) => {
                        let func = packed_func(&mut store, &instance, index)?;
                        func.call(&mut store, (bytes,))
                            .map(|(bytes,)| Output::Packed(bytes))
                    }
                    _ => bindings::Policy::new(&mut store, &instance)
                        .and_then(|policy| {
                            policy.call_evaluate(&mut store, &convert::request(request))
                        })
                        .map(|decision| Output::Decided(convert::decision(decision))),
                }
            }
        };
        let decided = called.map_err(|e| self.classify(&store, e, false));
        let fuel_used = self.fuel_used(&store);
        drop(store);
        drop(slot);
        let decision = match decided? {
            Output::Decided(decision) => decision,
            Output::Packed(bytes) => packed::decode_decision(&bytes)?,
        };
        span.record("fuel_used", fuel_used);
        contract::check_decision(&decision, request).map_err(EvalError::Contract)?;
        Ok(Evaluation {
            decision,
            fuel_used,
            elapsed: started.elapsed(),
        })
    }

    /// Compiles a core module, or takes it from the cache (then `true`).
    fn compile_core(
        &self,
        digest: &ModuleDigest,
        bytes: &[u8],
    ) -> Result<(Module, bool), LoadError> {
        let engine = &self.inner.engine;
        if let Some(artifact) = self.cached_artifact(digest, cache::Kind::Core) {
            #[expect(unsafe_code, reason = "loads native code this host compiled")]
            // SAFETY: the artifact is what `Module::serialize` made on an
            // engine whose configuration hash is in its name, unaltered
            // (its BLAKE3 seal matched), from a directory only the host may
            // write (see `cache`); wasmtime checks its version and
            // configuration header again.
            match unsafe { Module::deserialize(engine, &artifact) } {
                Ok(module) => return Ok((module, true)),
                Err(error) => {
                    tracing::warn!(%digest, %error, "a cached module does not load; compiling again")
                }
            }
        }
        let module =
            Module::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        if let Some(cache) = &self.inner.cache
            && let Ok(artifact) = module.serialize()
        {
            cache.put(engine, digest, cache::Kind::Core, &artifact);
        }
        Ok((module, false))
    }

    fn cached_artifact(&self, digest: &ModuleDigest, kind: cache::Kind) -> Option<Vec<u8>> {
        self.inner
            .cache
            .as_ref()?
            .get(&self.inner.engine, digest, kind)
    }

    /// Compiles a component (or takes it from the cache: then `true`) and
    /// checks its exports against the world.
    fn compile(&self, digest: &ModuleDigest, bytes: &[u8]) -> Result<(Compiled, bool), LoadError> {
        let engine = &self.inner.engine;
        let mut from_cache = None;
        if let Some(artifact) = self.cached_artifact(digest, cache::Kind::Component) {
            #[expect(unsafe_code, reason = "loads native code this host compiled")]
            // SAFETY: as in `compile_core`, for `Component::serialize`.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => from_cache = Some(component),
                Err(error) => {
                    tracing::warn!(%digest, %error, "a cached module does not load; compiling again")
                }
            }
        }
        let cached = from_cache.is_some();
        let component = match from_cache {
            Some(component) => component,
            None => {
                let component = Component::new(engine, bytes)
                    .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
                if let Some(cache) = &self.inner.cache
                    && let Ok(artifact) = component.serialize()
                {
                    cache.put(engine, digest, cache::Kind::Component, &artifact);
                }
                component
            }
        };
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Interface(format!("{e:#}")))?;
        let packed = component.get_export_index(None, "evaluate-packed");
        let pre = bindings::PolicyPre::new(instance_pre)
            .map_err(|e| LoadError::Interface(format!("{e:#}")))?;
        Ok((Compiled { pre, packed }, cached))
    }

    /// The module compiled as a component, compiling it now if it was not.
    fn compiled<'m>(&self, module: &'m PolicyModule) -> Result<&'m Compiled, EvalError> {
        module
            .compiled
            .get_or_init(|| {
                let (compiled, _) = self
                    .compile(&module.digest, &module.component)
                    .map_err(|e| e.to_string())?;
                if let Some(index) = &compiled.packed {
                    // `packed_func` relies on this check (it skips it per
                    // instance).
                    let _slot = self.inner.slots.take();
                    let mut store = self.store().map_err(|e| e.to_string())?;
                    let instance = compiled
                        .pre
                        .instance_pre()
                        .instantiate(&mut store)
                        .map_err(|e| format!("{e:#}"))?;
                    let _: PackedFunc = instance
                        .get_typed_func(&mut store, index)
                        .map_err(|e| format!("`evaluate-packed`: {e:#}"))?;
                }
                Ok(compiled)
            })
            .as_ref()
            .map_err(|e| EvalError::Instantiate(e.clone()))
    }

    /// Calls `describe()` on the core module.
    fn describe_core(&self, core: &core::CoreEntry) -> Result<model::Description, LoadError> {
        // Declared before the store, so dropped after it.
        let _slot = self.inner.slots.take();
        let mut store = self.store().map_err(LoadError::Describe)?;
        core.describe(&mut store)
            .map_err(|e| LoadError::Describe(self.classify(&store, e, false)))
    }

    /// Calls `describe()`, and checks `evaluate-packed`'s type if exported.
    fn describe(
        &self,
        pre: &bindings::PolicyPre<Sandbox>,
        packed: Option<&ComponentExportIndex>,
    ) -> Result<model::Description, LoadError> {
        // Declared before the store, so dropped after it.
        let _slot = self.inner.slots.take();
        let mut store = self.store().map_err(LoadError::Describe)?;
        let instance = pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| LoadError::Describe(self.classify(&store, e, true)))?;
        if let Some(index) = packed {
            // `packed_func` relies on this check (it skips it per instance).
            let _: PackedFunc = instance
                .get_typed_func(&mut store, index)
                .map_err(|e| LoadError::Interface(format!("`evaluate-packed`: {e:#}")))?;
        }
        bindings::Policy::new(&mut store, &instance)
            .map_err(|e| LoadError::Interface(format!("{e:#}")))?
            .call_describe(&mut store)
            .map(convert::description)
            .map_err(|e| LoadError::Describe(self.classify(&store, e, false)))
    }

    fn store(&self) -> Result<Store<Sandbox>, EvalError> {
        let limits = &self.inner.limits;
        let mut store = Store::new(
            &self.inner.engine,
            Sandbox {
                memory_cap: limits.memory_bytes,
                memory_refused: false,
            },
        );
        store.limiter(|sandbox| sandbox);
        store
            .set_fuel(limits.fuel)
            .map_err(|e| EvalError::Instantiate(format!("{e:#}")))?;
        store.set_epoch_deadline(deadline_ticks(limits.deadline));
        // What the component path may copy out of the instance: a decision
        // (typed, or packed as bytes) over the contract's cost fails as it
        // is lifted, before the host allocates more. Twice the limit:
        // wasmtime counts a little differently from `decision_cost`, and
        // the contract check after it gives the same refusal either path.
        store.set_hostcall_fuel(MAX_DECISION_BYTES.saturating_mul(2));
        Ok(store)
    }

    fn fuel_used(&self, store: &Store<Sandbox>) -> u64 {
        let left = store.get_fuel().unwrap_or(0);
        self.inner.limits.fuel.saturating_sub(left)
    }

    fn classify(
        &self,
        store: &Store<Sandbox>,
        error: wasmtime::Error,
        instantiating: bool,
    ) -> EvalError {
        let limits = &self.inner.limits;
        if store.data().memory_refused {
            return EvalError::MemoryLimit(limits.memory_bytes);
        }
        if let Some(refusal) = error.downcast_ref::<packed::Refusal>() {
            return match refusal {
                packed::Refusal::Malformed(detail) => EvalError::BadOutput(detail.clone()),
                packed::Refusal::Contract(detail) => EvalError::Contract(detail.clone()),
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => EvalError::FuelExhausted(limits.fuel),
            Some(Trap::Interrupt) => EvalError::Deadline(limits.deadline),
            Some(Trap::StackOverflow) => EvalError::StackOverflow,
            Some(trap) => EvalError::Trap(trap.to_string()),
            None if instantiating => EvalError::Instantiate(format!("{error:#}")),
            None => EvalError::BadOutput(format!("{error:#}")),
        }
    }
}

/// What a module returned: a decision (typed, or decoded straight out of
/// a core instance's memory), or the packed bytes the component path lifted.
enum Output {
    Decided(model::Decision),
    Packed(Vec<u8>),
}

/// `evaluate-packed` of a fresh instance, without type-checking it again.
fn packed_func(
    store: &mut Store<Sandbox>,
    instance: &Instance,
    index: &ComponentExportIndex,
) -> Result<PackedFunc, EvalError> {
    let func = instance
        .get_func(&mut *store, index)
        .ok_or_else(|| EvalError::Instantiate("`evaluate-packed` is not exported".into()))?;
    // Type-checking the export walks the whole `decision` type, on every
    // evaluation; `load` already checked this export of this component.
    #[expect(unsafe_code, reason = "skips a type check done once at load")]
    // SAFETY: `PolicyModule::packed` is set only after `describe` made
    // `get_typed_func::<PackedFunc>` succeed on an instance of the same
    // component, and every instance of a component has the same export
    // types.
    let typed = unsafe { TypedFunc::new_unchecked(func) };
    Ok(typed)
}

fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_nanos() / EPOCH_TICK.as_nanos().max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1) + 1
}

/// Per-store state: the memory cap, and whether the module hit it.
struct Sandbox {
    memory_cap: usize,
    memory_refused: bool,
}

/// The instance pool's slots. Every store takes one (an evaluation, or
/// `describe()` at load, instantiates one module), so more callers at once
/// than the pool holds wait for a slot (each is back within the deadline)
/// instead of failing to instantiate: a full pool is the host's load, not
/// the policy's answer. A slot is held outside its store and given back
/// only after the store is dropped: a store's own data is dropped before
/// its instances go back to the pool.
struct Slots {
    /// Slots not taken.
    free: AtomicU32,
    /// Callers waiting for a slot; a release wakes one only when there are.
    waiting: AtomicU32,
    lock: Mutex<()>,
    freed: Condvar,
}

impl Slots {
    fn new(total: u32) -> Self {
        Slots {
            free: AtomicU32::new(total),
            waiting: AtomicU32::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Takes a free slot if there is one, without locking.
    fn try_take(&self) -> bool {
        self.free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn take(&self) -> Slot<'_> {
        if !self.try_take() {
            // A waiter registers and retries under the lock, and a release
            // that sees it waiting notifies under the same lock: a slot
            // given back between the retry and the wait still wakes it. The
            // wait is also timed, so no missed wake-up could ever strand it.
            let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !self.try_take() {
                guard = self
                    .freed
                    .wait_timeout(guard, EPOCH_TICK)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        Slot(self)
    }
}

/// One slot of the pool, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let slots = self.0;
        slots.free.fetch_add(1, Ordering::SeqCst);
        if slots.waiting.load(Ordering::SeqCst) > 0 {
            let _guard = slots.lock.lock().unwrap_or_else(PoisonError::into_inner);
            slots.freed.notify_one();
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Advances the engine's epoch on a background thread; stops when dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("chaperone-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        if let Err(error) = spawned {
            // Fuel still bounds every evaluation; only the wall-clock
            // backstop is lost.
            tracing::error!(%error, "cannot start the epoch thread");
        }
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
