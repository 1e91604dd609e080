//! The sandbox against hostile modules: each attack yields its own clear
//! error within 100 ms, and the same runtime then still evaluates a good
//! module correctly.

use std::time::{Duration, Instant};

use chaperone::builtin;
use chaperone_model::{Action, Actor, Operation, OperationKind, Request, Verdict};
use chaperone_runtime::probe::{SAMPLE_NOW, sample_request};
use chaperone_runtime::{EntryPoint, EvalError, Limits, LoadError, Runtime};
use chaperone_tests::HOSTILE_WASM;
use chaperone_tests::modules::{core_module, embed_world, wat, wit_with};

use crate::alloc;

const STOP_WITHIN: Duration = Duration::from_millis(100);

/// One runtime for all these tests: every attack runs on the same host,
/// which must keep serving.
fn runtime() -> Runtime {
    static RUNTIME: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Runtime::new(Limits::default()).unwrap_or_else(|e| unreachable!("runtime: {e}"))
        })
        .clone()
}

fn act(name: &str) -> Request {
    let mut request = sample_request("hostile", OperationKind::Act, None);
    request.operation = Operation::Act(Action {
        name: name.into(),
        environment: Some("prod".into()),
        integration: None,
    });
    request
}

fn hostile_bytes() -> Vec<u8> {
    std::fs::read(HOSTILE_WASM).unwrap_or_else(|e| unreachable!("{HOSTILE_WASM}: {e}"))
}

/// The good module still decides correctly on the same runtime.
fn assert_good_module_works(runtime: &Runtime) {
    let celigo = runtime
        .load(builtin::CELIGO.bytes)
        .unwrap_or_else(|e| unreachable!("celigo: {e}"));
    let mut request = sample_request("celigo", OperationKind::Act, None);
    request.now = SAMPLE_NOW;
    let evaluation = runtime
        .evaluate(&celigo, &request)
        .unwrap_or_else(|e| unreachable!("celigo evaluate: {e}"));
    assert_eq!(
        evaluation.decision.verdict,
        Verdict::Allow,
        "{:?}",
        evaluation.decision
    );
}

fn check_attack(attack: &str, expect: impl Fn(&EvalError) -> bool) {
    let runtime = runtime();
    let module = runtime
        .load(&hostile_bytes())
        .unwrap_or_else(|e| unreachable!("hostile module loads: {e}"));
    let started = Instant::now();
    let outcome = runtime.evaluate(&module, &act(attack));
    let took = started.elapsed();
    match outcome {
        Err(error) => {
            assert!(
                expect(&error),
                "attack `{attack}` gave the wrong error: {error}"
            );
            assert!(!error.to_string().is_empty());
        }
        Ok(evaluation) => unreachable!(
            "attack `{attack}` was not stopped: {:?}",
            evaluation.decision
        ),
    }
    assert!(took < STOP_WITHIN, "attack `{attack}` took {took:?}");
    // The same module, well-behaved, and another module, still work.
    let fine = runtime.evaluate(&module, &act("fine"));
    assert!(
        fine.as_ref().is_ok_and(|e| e.decision.rule == "HOSTILE-OK"),
        "after `{attack}`: {fine:?}"
    );
    assert_good_module_works(&runtime);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    check_attack("loop", |e| matches!(e, EvalError::FuelExhausted(_)));
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    check_attack("grow", |e| matches!(e, EvalError::MemoryLimit(_)));
}

#[test]
fn unbounded_recursion_is_stopped() {
    // The shadow stack lives in linear memory: overflowing it either hits
    // wasm's own stack limit or faults below address 0.
    check_attack("recurse", |e| {
        matches!(e, EvalError::StackOverflow)
            || matches!(e, EvalError::Trap(m) if m.contains("out of bounds"))
    });
}

#[test]
fn unreachable_traps() {
    check_attack(
        "trap",
        |e| matches!(e, EvalError::Trap(m) if m.contains("unreachable")),
    );
}

#[test]
fn effect_on_an_unknown_target_breaks_the_contract() {
    check_attack(
        "target",
        |e| matches!(e, EvalError::Contract(m) if m.contains("g-of-another-account")),
    );
}

/// The SDK cuts every message to the length it believes the host's contract
/// allows (its own tests show the cut); this keeps the two the same, so a
/// module built with it never fails closed over a long quoted input.
#[test]
fn the_sdks_message_limit_is_the_hosts() {
    assert_eq!(
        chaperone_sdk::MAX_MESSAGE_LEN,
        chaperone_runtime::MAX_MESSAGE_LEN
    );
}

#[test]
fn megabytes_of_message_break_the_contract() {
    check_attack(
        "message",
        |e| matches!(e, EvalError::Contract(m) if m.contains("message is 4194304 bytes")),
    );
}

#[test]
fn a_deny_with_effects_breaks_the_contract() {
    check_attack(
        "deny-effect",
        |e| matches!(e, EvalError::Contract(m) if m.contains("a deny carries 1 effects")),
    );
}

#[test]
fn an_empty_rule_id_breaks_the_contract() {
    check_attack(
        "rule",
        |e| matches!(e, EvalError::Contract(m) if m.contains("rule id")),
    );
}

/// A decision over a limit costs at most the limit: counts are refused
/// before any item is read, a string's length before it is copied, and the
/// whole decision's cost as it grows (finding: 24 MiB of zeros after a
/// count decoded as 32M empty rules, 0.65-3.7 s and ~1.9 GB each time).
/// Each refusal is a contract error, within the stop bound, and the host
/// allocates little for it: on the direct path nothing of the payload; on
/// the typed path wasmtime stops lifting at twice the decision limit.
#[test]
fn a_decision_over_a_limit_costs_at_most_the_limit() {
    let runtime = runtime();
    let module = runtime
        .load(&hostile_bytes())
        .unwrap_or_else(|e| unreachable!("hostile module loads: {e}"));
    let huge = 8 << 20;
    // The typed entry's component is compiled on its first use: not timed.
    let warm = runtime.evaluate_with(&module, &act("fine"), EntryPoint::Typed);
    assert!(warm.is_ok(), "{warm:?}");
    let cases = [
        (
            "zero-rules",
            EntryPoint::Fastest,
            format!("{huge} rules listed; the limit is 32"),
            1 << 20,
        ),
        (
            "zero-effects",
            EntryPoint::Fastest,
            format!("{huge} effects; the limit is 64"),
            1 << 20,
        ),
        (
            "long-rule",
            EntryPoint::Fastest,
            format!("the rule id is {huge} bytes; the limit is 64"),
            1 << 20,
        ),
        (
            "long-message",
            EntryPoint::Fastest,
            format!("the message is {huge} bytes; the limit is 4096"),
            1 << 20,
        ),
        (
            "many-rules",
            EntryPoint::Fastest,
            format!("{} rules listed; the limit is 32", 1 << 16),
            1 << 20,
        ),
        (
            "many-rules",
            EntryPoint::Typed,
            format!("{} rules listed; the limit is 32", 1 << 16),
            8 << 20,
        ),
    ];
    for (attack, entry, expected, most) in cases {
        let started = Instant::now();
        let (outcome, allocated) =
            alloc::allocated_by(|| runtime.evaluate_with(&module, &act(attack), entry));
        let took = started.elapsed();
        let error = outcome.map(|e| e.decision).err();
        assert!(
            matches!(&error, Some(EvalError::Contract(m)) if *m == expected),
            "{attack} {entry:?}: {error:?}"
        );
        assert!(took < STOP_WITHIN, "{attack} {entry:?} took {took:?}");
        assert!(
            allocated <= most,
            "{attack} {entry:?}: the host allocated {allocated} bytes"
        );
    }
    assert_good_module_works(&runtime);
}

fn load_error(bytes: &[u8]) -> LoadError {
    let runtime = runtime();
    let error = match runtime.load(bytes) {
        Err(error) => error,
        Ok(module) => unreachable!("loaded a module that should be refused: {module:?}"),
    };
    assert_good_module_works(&runtime);
    error
}

#[test]
fn a_wasi_import_is_refused() {
    let bytes = wat(r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (func (export "evaluate")) (func (export "describe")))"#);
    let error = load_error(&bytes);
    assert!(
        matches!(&error, LoadError::Imports(i) if i == &["wasi_snapshot_preview1::fd_write"]),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("`wasi_snapshot_preview1::fd_write`")
    );
}

#[test]
fn any_other_import_is_refused() {
    let bytes =
        wat(r#"(module (import "env" "now" (func (result i64))) (memory (export "memory") 1))"#);
    let error = load_error(&bytes);
    assert!(
        matches!(&error, LoadError::Imports(i) if i == &["env::now"]),
        "{error}"
    );
}

#[test]
fn a_component_import_is_refused() {
    for text in [
        r#"(component (import "wasi:clocks/wall-clock@0.2.0" (instance)))"#,
        r#"(component (import "wasi:clocks/wall-clock@0.2.0"
            (instance (type u64) (export "now" (func (result u64))))))"#,
        r#"(component (import "now" (func (result u64))))"#,
        r#"(component (import "clock" (type (sub resource))))"#,
        r#"(component (import "wasi:io/poll@0.2.0" (instance (export "pollable" (type (sub resource))))))"#,
    ] {
        let error = load_error(&wat(text));
        assert!(
            matches!(&error, LoadError::Imports(i) if i.len() == 1),
            "{text}: {error}"
        );
    }
}

#[test]
fn a_module_missing_evaluate_is_refused() {
    let bytes = wat(r#"(module (func (export "describe")))"#);
    let error = load_error(&bytes);
    assert!(
        matches!(&error, LoadError::MissingExport(e) if e == "evaluate"),
        "{error}"
    );
}

#[test]
fn a_component_missing_the_exports_is_refused() {
    let bytes = wat(r#"(component)"#);
    let error = load_error(&bytes);
    assert!(
        matches!(&error, LoadError::MissingExport(e) if e == "describe"),
        "{error}"
    );
}

/// The host type-checks `evaluate-packed` once, at load (evaluations skip
/// the check): a module whose `evaluate-packed` takes anything but
/// `list<u8>` is refused there.
#[test]
fn an_evaluate_packed_of_the_wrong_type_is_refused() {
    let (resolve, world) = wit_with(
        "world extra {
            use types.{request, decision, description};
            export describe: func() -> description;
            export evaluate: func(request: request) -> decision;
            export evaluate-packed: func(request: string) -> decision;
        }",
    );
    // A core module with exactly the world's exports (each traps), carrying
    // the world as its component type, as wit-bindgen would emit it.
    let mut module = wit_component::dummy_module(
        &resolve,
        world,
        wit_parser::ManglingAndAbi::Legacy(wit_parser::LiftLowerAbi::Sync),
    );
    embed_world(&mut module, &resolve, world);
    let error = load_error(&module);
    assert!(
        matches!(&error, LoadError::Interface(m) if m.contains("`evaluate-packed`")),
        "{error}"
    );
}

/// What compiling costs is bounded before anything is compiled (finding:
/// 100k trivial functions took 44 s of CPU to load): a module over one of
/// the limits a vendor can see (`policy inspect`) is refused by name.
#[test]
fn a_module_over_a_compile_limit_is_refused_before_compiling() {
    let limits = chaperone_runtime::COMPILE_LIMITS;
    let functions = "(func)".repeat(usize::try_from(limits.functions).unwrap_or(0) + 1);
    let locals = format!(
        "(func (local {}))",
        "i32 ".repeat(usize::try_from(limits.locals).unwrap_or(0) + 1)
    );
    let data = format!(
        "(memory 1) {}",
        r#"(data (i32.const 0) "x")"#
            .repeat(usize::try_from(limits.data_segments).unwrap_or(0) + 1)
    );
    for (what, fields, expected) in [
        ("functions", functions, "defined functions"),
        ("locals", locals, "locals in one function"),
        ("data", data, "data segments"),
    ] {
        let bytes = core_module(0, &[], "i32.const 64", &fields, "");
        let error = load_error(&bytes);
        assert!(
            matches!(&error, LoadError::OverLimit { what, found, limit }
                if *what == expected && found > limit),
            "{what}: {error}"
        );
    }
    // The built-in modules are far inside every limit.
    for builtin in builtin::ALL {
        let size =
            chaperone_runtime::measure(builtin.bytes).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(size.functions * 10 < limits.functions, "{size:?}");
        assert!(size.code_bytes * 10 < limits.code_bytes, "{size:?}");
        assert!(chaperone_runtime::within_limits(&size).is_ok());
    }
}

/// A restart (or a second process) does not compile again: what one
/// runtime compiled, the next loads from the cache directory; a damaged
/// entry is compiled again and rewritten, never loaded.
#[test]
fn compiled_modules_are_kept_on_disk_and_checked_when_loaded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
    let open = || {
        let cache = chaperone_runtime::CompileCache::open(dir.path().join("modules"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        Runtime::with_cache(Limits::default(), Some(cache)).unwrap_or_else(|e| unreachable!("{e}"))
    };
    let mut request = sample_request("celigo", OperationKind::Act, None);
    request.now = SAMPLE_NOW;
    let decide = |runtime: &Runtime| {
        let module = runtime
            .load(builtin::CELIGO.bytes)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let evaluation = runtime
            .evaluate(&module, &request)
            .unwrap_or_else(|e| unreachable!("{e}"));
        (
            module.from_cache(),
            evaluation.decision,
            evaluation.fuel_used,
        )
    };
    let (cached, decision, fuel) = decide(&open());
    assert!(!cached, "nothing to take from an empty cache");
    // Compiled once: as itself, not also as a component (finding: every
    // core module was compiled twice), until the typed entry is used.
    let runtime = open();
    let module = runtime
        .load(builtin::CELIGO.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(module.direct() && !module.compiled_as_component());
    let typed = runtime.evaluate_with(&module, &request, EntryPoint::Typed);
    assert_eq!(typed.map(|e| e.decision).ok().as_ref(), Some(&decision));
    assert!(module.compiled_as_component());
    let entries = || {
        std::fs::read_dir(dir.path().join("modules"))
            .unwrap_or_else(|e| unreachable!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let all = entries();
    let named = |kind: &str| {
        all.iter()
            .filter(|p| p.to_string_lossy().contains(kind))
            .cloned()
            .collect::<Vec<_>>()
    };
    // The core module, and the component the typed entry compiled.
    assert_eq!(
        (named(".core.").len(), named(".component.").len()),
        (1, 1),
        "{all:?}"
    );
    let files = named(".core.");
    assert_eq!(decide(&open()), (true, decision.clone(), fuel));
    // One byte of the artifact changed: compiled again, and rewritten.
    let file = files.first().cloned().unwrap_or_default();
    let mut bytes = std::fs::read(&file).unwrap_or_else(|e| unreachable!("{e}"));
    if let Some(byte) = bytes.last_mut() {
        *byte ^= 1;
    }
    std::fs::write(&file, &bytes).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(decide(&open()), (false, decision.clone(), fuel));
    assert_eq!(decide(&open()), (true, decision, fuel));
}

#[test]
fn a_core_module_without_its_component_type_is_refused() {
    let bytes = wat(r#"(module (func (export "describe")) (func (export "evaluate")))"#);
    let error = load_error(&bytes);
    assert!(matches!(error, LoadError::NoComponentType), "{error}");
}

#[test]
fn random_bytes_are_not_wasm() {
    let bytes: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(matches!(load_error(&bytes), LoadError::NotWasm));
}

#[test]
fn a_wasm_header_with_garbage_is_invalid() {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(&[0xff; 64]);
    assert!(matches!(load_error(&bytes), LoadError::Invalid(_)));
}

#[test]
fn a_module_over_the_size_limit_is_refused_before_it_is_parsed() {
    let size = builtin::CELIGO.bytes.len();
    let tight = Runtime::new(Limits {
        module_bytes: size - 1,
        ..Limits::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"));
    match tight.load(builtin::CELIGO.bytes) {
        Err(LoadError::TooLarge { size: s, limit }) => {
            assert_eq!((s, limit), (size, size - 1));
        }
        other => unreachable!("expected TooLarge, got {other:?}"),
    }
    // Random bytes over the limit: the size is named, not the bytes' content.
    let noise = vec![0xa5; size];
    assert!(matches!(
        tight.load(&noise),
        Err(LoadError::TooLarge { .. })
    ));
    let exact = Runtime::new(Limits {
        module_bytes: size,
        ..Limits::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(exact.load(builtin::CELIGO.bytes).is_ok());
}

#[test]
fn an_empty_file_is_refused() {
    assert!(matches!(load_error(&[]), LoadError::Empty));
}

#[test]
fn modules_are_pinned_by_digest_and_compiled_once() {
    let runtime = runtime();
    let first = runtime
        .load(builtin::CELIGO.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let second = runtime
        .load(builtin::CELIGO.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(std::sync::Arc::ptr_eq(&first, &second));
    assert_eq!(
        first.digest(),
        chaperone_runtime::ModuleDigest::of(builtin::CELIGO.bytes)
    );
    let xentral = runtime
        .load(builtin::XENTRAL.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_ne!(first.digest(), xentral.digest());
    assert_eq!(xentral.description().vendor, "xentral");
}

/// `evaluate-packed` (what the host calls) and `evaluate` (the typed entry)
/// decide identically: the built-in modules and the example, every listed
/// operation, on the sample account, an empty one, and for a user and an
/// agent.
#[test]
fn the_packed_and_typed_entry_points_decide_identically() {
    let runtime = runtime();
    let ticketed = std::fs::read(chaperone_tests::TICKETED_WASM)
        .unwrap_or_else(|e| unreachable!("the example module: {e}"));
    let modules = builtin::ALL
        .iter()
        .map(|b| (b.vendor, b.bytes.to_vec()))
        .chain([("ticketed", ticketed)]);
    let mut compared = 0;
    for (vendor, bytes) in modules {
        let module = runtime
            .load(&bytes)
            .unwrap_or_else(|e| unreachable!("{vendor}: {e}"));
        assert!(module.packed(), "{vendor} exports evaluate-packed");
        assert!(
            module.direct(),
            "{vendor} is a core module, called directly"
        );
        let description = module.description().clone();
        let customs = description
            .custom_operations
            .iter()
            .map(|c| Some(c.as_str()));
        for kind in &description.operations {
            let names: Vec<Option<&str>> = if *kind == OperationKind::Custom {
                customs.clone().collect()
            } else {
                vec![None]
            };
            for custom in names {
                let sample = sample_request(vendor, *kind, custom);
                let mut empty = sample.clone();
                empty.account.users.clear();
                empty.account.grants.clear();
                empty.account.environments.clear();
                let mut agent = sample.clone();
                agent.actor = Actor::Agent("agent@vendor.test".into());
                let mut later = sample.clone();
                later.now += 400 * 24 * 3_600_000;
                for request in [sample, empty, agent, later] {
                    let packed = runtime.evaluate_with(&module, &request, EntryPoint::Fastest);
                    let typed = runtime.evaluate_with(&module, &request, EntryPoint::Typed);
                    assert_eq!(
                        format!("{:?}", packed.map(|e| e.decision)),
                        format!("{:?}", typed.map(|e| e.decision)),
                        "{vendor} {kind:?} {custom:?}"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert!(compared >= 40, "{compared} comparisons");
}

/// Every way to spin (`SPINS`) is stopped by its fuel, never by the
/// wall clock, however busy the machine: the same refusal every time, even
/// with every core busy (finding: loops of `memory.grow 0` spent 20M fuel
/// in ~390 ms, past the deadline, so a busy machine decided differently).
#[test]
fn every_way_to_spin_is_stopped_by_fuel_under_load() {
    let runtime = runtime();
    let request = act("read");
    let busy = busy_cores();
    for (name, _, _) in chaperone_tests::modules::SPINS {
        let bytes =
            chaperone_tests::modules::spin_module(name).unwrap_or_else(|| unreachable!("{name}"));
        let module = runtime
            .load(&bytes)
            .unwrap_or_else(|e| unreachable!("{name}: {e}"));
        for _ in 0..2 {
            let error = runtime
                .evaluate(&module, &request)
                .map(|e| e.decision)
                .err();
            let expected = match *name {
                "memory.grow 1" => matches!(error, Some(EvalError::MemoryLimit(_))),
                _ => matches!(error, Some(EvalError::FuelExhausted(_))),
            };
            assert!(expected, "{name}: {error:?}");
        }
    }
    drop(busy);
}

/// A legal module that uses 18M of its 20M fuel decides the same, with
/// the same fuel, every time while every core is busy (finding: such a
/// module got 7 allows and 3 deadline errors out of 10 on a busy machine).
#[test]
fn a_module_near_its_fuel_limit_decides_the_same_under_load() {
    let runtime = runtime();
    let module = runtime
        .load(&chaperone_tests::modules::near_fuel_limit_module(1_200_000))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let busy = busy_cores();
    let mut fuel = Vec::new();
    for _ in 0..10 {
        let evaluation = runtime
            .evaluate(&module, &act("read"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(evaluation.decision.rule, "R");
        fuel.push(evaluation.fuel_used);
    }
    drop(busy);
    fuel.dedup();
    assert_eq!(fuel.len(), 1, "{fuel:?}");
    let used = fuel.first().copied().unwrap_or_default();
    let limit = Limits::default().fuel;
    assert!(
        used > limit / 10 * 9 && used < limit,
        "uses {used} of {limit}"
    );
}

/// Threads that keep every core busy while it lives (they end when it is
/// dropped, also when a test fails).
pub(crate) struct Busy(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn busy_cores() -> Busy {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for _ in 0..cores {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 1u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ 1);
                }
            }
        });
    }
    Busy(stop)
}

/// A module whose `evaluate-packed` allows (rule `R`) when `check`, an
/// `i32` expression, is non-zero and denies (rule `N`) otherwise; floats
/// laid out from 2048: 0.0 at 2048, a `f32x4` of 1+2^-12 at 2064, one of
/// -(1+2^-11) at 2080, one of NaN at 2096.
fn observing(check: &str) -> Vec<u8> {
    let pair = |ptr: u32, len: u32| [ptr.to_le_bytes(), len.to_le_bytes()].concat();
    let data = [
        pair(1040, 7),
        pair(1048, 7),
        vec![0, 1, b'R', 1, b'm', 0, 0, 0],
        vec![1, 1, b'N', 1, b'm', 0, 0, 0],
    ]
    .concat();
    let floats = r#"(data (i32.const 2064) "\00\08\80\3f\00\08\80\3f\00\08\80\3f\00\08\80\3f")
        (data (i32.const 2080) "\00\10\80\bf\00\10\80\bf\00\10\80\bf\00\10\80\bf")
        (data (i32.const 2096) "\00\00\c0\7f\00\00\c0\7f\00\00\c0\7f\00\00\c0\7f")"#;
    core_module(
        1024,
        &data,
        "i32.const 64",
        floats,
        &format!("(return (select (i32.const 1024) (i32.const 1032) {check}))"),
    )
}

/// What a module sees of host-dependent results is the same on every host
/// (finding: 0/0 gave `0xffc00000` on x86, relaxed SIMD gave x86's answers):
/// NaNs are canonical, `relaxed_madd` is fused, `relaxed_trunc` of NaN is 0.
#[test]
fn a_module_cannot_observe_the_host() {
    let runtime = runtime();
    let cases = [
        (
            "f32 0/0 is the canonical NaN",
            "(i32.eq (i32.reinterpret_f32 (f32.div (f32.load (i32.const 2048)) (f32.load (i32.const 2048)))) (i32.const 0x7fc00000))",
        ),
        (
            "f64 0/0 is the canonical NaN",
            "(i64.eq (i64.reinterpret_f64 (f64.div (f64.load (i32.const 2048)) (f64.load (i32.const 2048)))) (i64.const 0x7ff8000000000000))",
        ),
        (
            "sqrt(-1) is the canonical NaN",
            "(i32.eq (i32.reinterpret_f32 (f32.sqrt (f32.neg (f32.load (i32.const 2064))))) (i32.const 0x7fc00000))",
        ),
        (
            "relaxed_madd is fused",
            "(i32.eq (i32x4.extract_lane 0 (f32x4.relaxed_madd (v128.load (i32.const 2064)) (v128.load (i32.const 2064)) (v128.load (i32.const 2080)))) (i32.const 0x33800000))",
        ),
        (
            "relaxed_trunc of NaN is 0",
            "(i32.eqz (i32x4.extract_lane 0 (i32x4.relaxed_trunc_f32x4_s (v128.load (i32.const 2096)))))",
        ),
    ];
    for (what, check) in cases {
        let module = runtime
            .load(&observing(check))
            .unwrap_or_else(|e| unreachable!("{what}: {e}"));
        let decision = runtime
            .evaluate(&module, &act("read"))
            .unwrap_or_else(|e| unreachable!("{what}: {e}"))
            .decision;
        assert_eq!(decision.rule, "R", "{what}");
    }
    // And the check can fail: a module that looks for x86's NaN is denied.
    let module = runtime
        .load(&observing(
            "(i32.eq (i32.reinterpret_f32 (f32.div (f32.load (i32.const 2048)) (f32.load (i32.const 2048)))) (i32.const 0xffc00000))",
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let decision = runtime
        .evaluate(&module, &act("read"))
        .unwrap_or_else(|e| unreachable!("{e}"))
        .decision;
    assert_eq!(decision.rule, "N");
}

/// A hand-written core module for world `sdk-policy` whose `describe`
/// works and whose `evaluate-packed` returns `returned`, a pointer into
/// `data` (laid out from address 1024).
fn core_module_returning(returned: u32, data: &[u8]) -> Vec<u8> {
    core_module(returned, data, "i32.const 64", "", "")
}

/// A core module's `evaluate-packed` that breaks the canonical ABI or
/// returns bytes that are not a decision gets a clear error each time,
/// never a decision, and the host keeps working.
#[test]
fn a_direct_evaluate_packed_that_returns_garbage_is_refused() {
    let runtime = runtime();
    let pair = |ptr: u32, len: u32| [ptr.to_le_bytes(), len.to_le_bytes()].concat();
    // A deny decided by rule "R" with message "m".
    let deny = [1u8, 1, b'R', 1, b'm', 0, 0];
    let cases: Vec<(&str, u32, Vec<u8>, &str)> = vec![
        ("a misaligned pointer", 1026, vec![], "misaligned"),
        (
            "a pointer beyond memory",
            0x7fff_fff0,
            vec![],
            "out of bounds",
        ),
        (
            "a list beyond memory",
            1024,
            pair(65_000, 4096),
            "out of bounds",
        ),
        (
            "bytes that are not a decision",
            1024,
            [pair(1032, 3), vec![7, 7, 7]].concat(),
            "not a decision",
        ),
        (
            "bytes after the decision",
            1024,
            [pair(1032, 8), deny.to_vec(), vec![0]].concat(),
            "after the decision",
        ),
    ];
    for (what, returned, data, expected) in cases {
        let module = runtime
            .load(&core_module_returning(returned, &data))
            .unwrap_or_else(|e| unreachable!("{what}: {e}"));
        assert!(module.direct(), "{what}");
        let error = runtime
            .evaluate(&module, &act("read"))
            .map(|e| e.decision)
            .err();
        assert!(
            matches!(&error, Some(EvalError::BadOutput(m)) if m.contains(expected)),
            "{what}: {error:?}"
        );
    }
    // The same module layout returning a well-formed decision works.
    let module = runtime
        .load(&core_module_returning(
            1024,
            &[pair(1032, 7), deny.to_vec()].concat(),
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
    let decision = runtime
        .evaluate(&module, &act("read"))
        .unwrap_or_else(|e| unreachable!("{e}"))
        .decision;
    assert_eq!(
        (decision.verdict, decision.rule.as_str()),
        (Verdict::Deny, "R")
    );
    assert_good_module_works(&runtime);
}

/// Loading runs code too (a start function, `describe()`): a module that
/// spins there is stopped by its fuel, and its load refused, without
/// hanging the host.
#[test]
fn a_module_that_spins_while_loading_is_refused() {
    let runtime = runtime();
    let spin = "(func $spin (loop $l (br $l)))";
    let cases = [
        (
            "a start function",
            format!("{spin} (start $spin)"),
            "i32.const 64",
        ),
        ("describe()", spin.to_string(), "call $spin i32.const 64"),
    ];
    for (what, extra, describe) in cases {
        let started = Instant::now();
        let error = runtime
            .load(&core_module(0, &[], describe, &extra, ""))
            .err();
        let took = started.elapsed();
        assert!(
            matches!(
                &error,
                Some(LoadError::Describe(
                    EvalError::FuelExhausted(_) | EvalError::Deadline(_)
                ))
            ),
            "{what}: {error:?}"
        );
        assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
    }
    assert_good_module_works(&runtime);
}

/// A module loaded as a component (here, a built-in module componentized
/// before loading) takes the component path to `evaluate-packed`, and
/// decides as the same module loaded as a core module.
#[test]
fn a_component_decides_as_its_core_module_does() {
    let runtime = runtime();
    let component = wit_component::ComponentEncoder::default()
        .module(builtin::CELIGO.bytes)
        .and_then(|mut encoder| encoder.encode())
        .unwrap_or_else(|e| unreachable!("{e:#}"));
    let as_component = runtime
        .load(&component)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let as_core = runtime
        .load(builtin::CELIGO.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(as_component.packed() && !as_component.direct());
    assert!(as_core.direct());
    for kind in [
        OperationKind::Act,
        OperationKind::Grant,
        OperationKind::Revoke,
    ] {
        let request = sample_request("celigo", kind, None);
        let decide = |module| {
            runtime
                .evaluate(module, &request)
                .map(|e| e.decision)
                .unwrap_or_else(|e| unreachable!("{kind:?}: {e}"))
        };
        assert_eq!(decide(&as_component), decide(&as_core), "{kind:?}");
    }
}

/// More evaluations at once than the instance pool has slots wait for a
/// slot: none fails for want of one (which would be a fail-closed denial the
/// policy never made).
#[test]
fn evaluations_beyond_the_pool_wait_for_a_slot() {
    let runtime = Runtime::new(Limits {
        max_instances: 1,
        ..Limits::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"));
    let celigo = runtime
        .load(builtin::CELIGO.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let xentral = runtime
        .load(builtin::XENTRAL.bytes)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let requests = [
        (&celigo, sample_request("celigo", OperationKind::Act, None)),
        (
            &xentral,
            sample_request("xentral", OperationKind::Act, None),
        ),
    ];
    std::thread::scope(|scope| {
        for (t, (module, request)) in requests.iter().cycle().take(8).enumerate() {
            let runtime = &runtime;
            scope.spawn(move || {
                for i in 0..300 {
                    if let Err(error) = runtime.evaluate(module, request) {
                        unreachable!("thread {t}, evaluation {i}: {error}");
                    }
                }
            });
        }
    });
}

#[test]
fn a_pool_of_no_instances_is_refused() {
    let error = Runtime::new(Limits {
        max_instances: 0,
        ..Limits::default()
    })
    .err()
    .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("`max_instances` must be at least 1")),
        "{error:?}"
    );
}

#[test]
fn the_same_input_gives_the_same_decision() {
    let runtime = runtime();
    for builtin in builtin::ALL {
        let module = runtime
            .load(builtin.bytes)
            .unwrap_or_else(|e| unreachable!("{e}"));
        for kind in &module.description().operations {
            let request = sample_request(builtin.vendor, *kind, None);
            let a = runtime
                .evaluate(&module, &request)
                .map(|e| (e.decision, e.fuel_used));
            let b = runtime
                .evaluate(&module, &request)
                .map(|e| (e.decision, e.fuel_used));
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
            assert!(a.is_ok(), "{}: {kind:?}: {a:?}", builtin.vendor);
        }
    }
}

#[test]
fn a_module_with_a_tiny_fuel_budget_is_stopped_cleanly() {
    let runtime = Runtime::new(Limits {
        fuel: 20,
        ..Limits::default()
    })
    .unwrap_or_else(|e| unreachable!("{e}"));
    // Loading runs describe(), which needs more than 20 fuel.
    let error = match runtime.load(builtin::CELIGO.bytes) {
        Err(LoadError::Describe(error)) => error,
        other => unreachable!("expected fuel exhaustion in describe, got {other:?}"),
    };
    assert!(matches!(error, EvalError::FuelExhausted(20)), "{error}");
}
