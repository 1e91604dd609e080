//! Hand-written core modules for world `sdk-policy`, as wit-bindgen would
//! emit them (with their component type embedded), for attacks the SDK
//! cannot express: raw outputs, and every way a module can spin.

/// The WIT package with one more world, named `extra`, appended.
pub fn wit_with(world: &str) -> (wit_parser::Resolve, wit_parser::WorldId) {
    let mut wit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sdk/wit/policy.wit"
    ))
    .unwrap_or_else(|e| unreachable!("the WIT package: {e}"));
    wit.push_str(world);
    let mut resolve = wit_parser::Resolve::default();
    let world = resolve
        .push_str("policy.wit", &wit)
        .and_then(|package| resolve.select_world(&[package], Some("extra")))
        .unwrap_or_else(|e| unreachable!("{e:#}"));
    (resolve, world)
}

/// Adds `world` to a core module as its component type, as wit-bindgen
/// does.
pub fn embed_world(
    module: &mut Vec<u8>,
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
) {
    wit_component::embed_component_metadata(
        module,
        resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| unreachable!("{e:#}"));
}

/// WebAssembly text to binary.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).unwrap_or_else(|e| unreachable!("wat: {e}"))
}

/// A core module whose `describe` works ("evil" 1.0.0, `act`) and whose
/// `evaluate-packed` returns `returned`, a pointer into `data` (laid out
/// from address 1024); `describe`'s body given, `extra` module fields
/// added, and `evaluate_packed` run before the pointer is returned.
pub fn core_module(
    returned: u32,
    data: &[u8],
    describe: &str,
    extra: &str,
    evaluate_packed: &str,
) -> Vec<u8> {
    let escaped: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
    // `describe` returns a pointer to (vendor, version, operations,
    // custom operations), each a (pointer, length) pair: "evil", "1.0.0",
    // [act].
    let mut module = wat(&format!(
        r#"(module
            (memory (export "memory") 1)
            (data (i32.const 16) "evil")
            (data (i32.const 32) "1.0.0")
            (data (i32.const 48) "\08")
            (data (i32.const 64) "\10\00\00\00\04\00\00\00\20\00\00\00\05\00\00\00\30\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
            (data (i32.const 1024) "{escaped}")
            (func (export "describe") (result i32) {describe})
            {extra}
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 8192)
            (func (export "evaluate") (param i32) (result i32) unreachable)
            (func (export "evaluate-packed") (param i32 i32) (result i32)
                (local $x f64) (local $y f64) (local $n i64) (local $v v128)
                {evaluate_packed}
                i32.const {returned}))"#
    ));
    let (resolve, world) = wit_with(
        "world extra {
            use types.{request, decision, description};
            export describe: func() -> description;
            export evaluate: func(request: request) -> decision;
            export evaluate-packed: func(request: list<u8>) -> list<u8>;
        }",
    );
    embed_world(&mut module, &resolve, world);
    module
}

/// Every way a module can spend its time without returning, each a loop
/// only fuel (or the deadline) can stop.
pub const SPINS: &[(&str, &str, &str)] = &[
    ("br", "", "(loop $l (br $l))"),
    (
        "memory.grow 0",
        "",
        "(loop $l (drop (memory.grow (i32.const 0))) (br $l))",
    ),
    (
        "memory.grow 1",
        "",
        "(loop $l (drop (memory.grow (i32.const 1))) (br $l))",
    ),
    (
        "memory.size",
        "",
        "(loop $l (drop (memory.size)) (br $l))",
    ),
    (
        "table.grow 0",
        "(table $t 1 funcref)",
        "(loop $l (drop (table.grow $t (ref.null func) (i32.const 0))) (br $l))",
    ),
    (
        "table.fill",
        "(table $t 1000 funcref)",
        "(loop $l (table.fill $t (i32.const 0) (ref.null func) (i32.const 1000)) (br $l))",
    ),
    (
        "table.copy",
        "(table $t 1000 funcref)",
        "(loop $l (table.copy $t $t (i32.const 0) (i32.const 1) (i32.const 999)) (br $l))",
    ),
    (
        "memory.fill 0",
        "",
        "(loop $l (memory.fill (i32.const 0) (i32.const 0) (i32.const 0)) (br $l))",
    ),
    (
        "memory.fill 64 KiB",
        "",
        "(loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 65536)) (br $l))",
    ),
    (
        "memory.copy 32 KiB",
        "",
        "(loop $l (memory.copy (i32.const 0) (i32.const 32768) (i32.const 32768)) (br $l))",
    ),
    (
        "memory.copy 0",
        "",
        "(loop $l (memory.copy (i32.const 0) (i32.const 1) (i32.const 0)) (br $l))",
    ),
    (
        "f64.div",
        "",
        "(local.set $x (f64.const 1.5)) (local.set $y (f64.convert_i32_u (local.get 1)))
         (loop $l (local.set $x (f64.div (local.get $x) (f64.add (local.get $y) (f64.const 1.0000001)))) (br $l))",
    ),
    (
        "f64.sqrt",
        "",
        "(local.set $x (f64.convert_i32_u (local.get 1)))
         (loop $l (local.set $x (f64.sqrt (f64.add (local.get $x) (f64.const 2)))) (br $l))",
    ),
    (
        "f64x2.div",
        "",
        "(local.set $v (f64x2.splat (f64.convert_i32_u (local.get 1))))
         (loop $l (local.set $v (f64x2.div (local.get $v) (f64x2.splat (f64.const 1.0000001)))) (br $l))",
    ),
    (
        "f64x2.sqrt",
        "",
        "(local.set $v (f64x2.splat (f64.convert_i32_u (local.get 1))))
         (loop $l (local.set $v (f64x2.sqrt (f64x2.add (local.get $v) (f64x2.splat (f64.const 2))))) (br $l))",
    ),
    (
        "i64.div_u",
        "",
        "(local.set $n (i64.extend_i32_u (i32.or (local.get 1) (i32.const 3))))
         (loop $l (local.set $n (i64.add (i64.div_u (i64.const -1) (local.get $n)) (i64.const 3))) (br $l))",
    ),
    (
        "i64.rem_s",
        "",
        "(local.set $n (i64.extend_i32_u (i32.or (local.get 1) (i32.const 3))))
         (loop $l (local.set $n (i64.add (i64.rem_s (i64.const 9223372036854775807) (local.get $n)) (i64.const 3))) (br $l))",
    ),
    (
        "call",
        "(func $nop)",
        "(loop $l (call $nop) (br $l))",
    ),
    (
        "call_indirect",
        "(type $t0 (func)) (table $t 1 funcref) (elem (table $t) (i32.const 0) func $nop) (func $nop)",
        "(loop $l (call_indirect $t (type $t0) (i32.const 0)) (br $l))",
    ),
    (
        "recursion",
        "(func $down (param i32) (if (local.get 0) (then (call $down (i32.sub (local.get 0) (i32.const 1))))))",
        "(loop $l (call $down (i32.const 2000)) (br $l))",
    ),
    (
        "load and store",
        "",
        "(loop $l (i64.store (i32.const 8) (i64.add (i64.load (i32.const 8)) (i64.const 1))) (br $l))",
    ),
    (
        "br_table",
        "",
        "(loop $l (block $a (block $b (br_table $a $b $l (i32.and (local.get 1) (i32.const 1))))) (br $l))",
    ),
];

/// The module that spins the way `SPINS` names, or `None`.
pub fn spin_module(name: &str) -> Option<Vec<u8>> {
    let (_, extra, body) = SPINS.iter().find(|(n, _, _)| *n == name)?;
    Some(core_module(1024, &[], "i32.const 64", extra, body))
}

/// A legal module that spends most of its fuel in `f64.div` and then
/// allows (rule `R`): `iterations` of a loop of 15 fuel units, so
/// 1,200,000 spend 18M of the default 20M. Its decision must not depend on
/// how busy the machine is.
pub fn near_fuel_limit_module(iterations: u64) -> Vec<u8> {
    let pair = |ptr: u32, len: u32| [ptr.to_le_bytes(), len.to_le_bytes()].concat();
    let data = [pair(1032, 7), vec![0, 1, b'R', 1, b'm', 0, 0]].concat();
    let body = format!(
        "(local.set $x (f64.const 1.5)) (local.set $y (f64.const 1.0000001))
         (local.set $n (i64.const {iterations}))
         (loop $l
            (local.set $x (f64.div (local.get $x) (local.get $y)))
            (local.set $n (i64.sub (local.get $n) (i64.const 1)))
            (br_if $l (i64.ne (local.get $n) (i64.const 0))))"
    );
    core_module(1024, &data, "i32.const 64", "", &body)
}
