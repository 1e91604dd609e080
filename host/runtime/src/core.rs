//! The direct path to `evaluate-packed` for core modules built with the SDK.
//!
//! A core module carrying wit-bindgen's component-type section is turned
//! into a component at load (for `describe`, and for `evaluate` with typed
//! values). Its `evaluate-packed` takes and returns one `list<u8>`, whose
//! canonical-ABI lowering is two `i32`s in and a pointer to two `i32`s out,
//! so the host can as well call the core module's own export, without the
//! component layer: one instance instead of a component instance around
//! it, no per-evaluation lookup of every lifted export, no post-return call
//! (the instance is thrown away anyway). The steps are the canonical ABI's
//! for `func(list<u8>) -> list<u8>`: `cabi_realloc` for the argument, the
//! call, then the result's pointer and length, checked against the memory.
//!
//! Only modules the host componentized itself take this path: for those,
//! wit-component's conventions fix the core export names, and its encoder
//! has checked their types against the WIT signature; load checks them
//! again here.

use wasmtime::{
    ExternType, Func, InstancePre, Linker, Memory, Module, ModuleExport, Store, ValRaw, ValType,
};

use super::packed::decode_decision;
use super::{LoadError, Sandbox};
use crate::contract::{MAX_CUSTOM_OPERATIONS, MAX_RULE_LEN};
use chaperone_model::{Decision, Description, OperationKind};

/// `cabi_realloc(old_ptr, old_len, align, new_len) -> ptr`.
const REALLOC_PARAMS: usize = 4;

/// `evaluate-packed(ptr, len) -> pointer to (ptr, len)`.
const EVALUATE_PARAMS: usize = 2;

/// A core module's `evaluate-packed`, ready to instantiate.
pub(super) struct CoreEntry {
    pre: InstancePre<Sandbox>,
    memory: ModuleExport,
    realloc: ModuleExport,
    evaluate: ModuleExport,
    describe: ModuleExport,
}

impl CoreEntry {
    /// The compiled core module's entry when it exports `evaluate-packed`
    /// with its canonical-ABI type (`None` when it does not export it at
    /// all).
    pub(super) fn new(
        linker: &Linker<Sandbox>,
        module: &Module,
    ) -> Result<Option<Self>, LoadError> {
        let module = module.clone();
        if module.get_export("evaluate-packed").is_none() {
            return Ok(None);
        }
        // `call_i32` relies on these checks.
        let i32s = |n: usize| vec![ValType::I32; n];
        expect_func(&module, "evaluate-packed", &i32s(EVALUATE_PARAMS), &i32s(1))?;
        expect_func(&module, "cabi_realloc", &i32s(REALLOC_PARAMS), &i32s(1))?;
        expect_func(&module, "describe", &[], &i32s(1))?;
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(LoadError::Interface(
                "the core module exports `evaluate-packed` but no memory named `memory`".into(),
            ));
        }
        let export = |name: &str| {
            module
                .get_export_index(name)
                .ok_or_else(|| LoadError::Interface(format!("no export `{name}`")))
        };
        let (memory, realloc, evaluate, describe) = (
            export("memory")?,
            export("cabi_realloc")?,
            export("evaluate-packed")?,
            export("describe")?,
        );
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Interface(format!("{e:#}")))?;
        Ok(Some(CoreEntry {
            pre,
            memory,
            realloc,
            evaluate,
            describe,
        }))
    }

    /// Calls `describe()` on a fresh instance and lifts the description it
    /// returns as the canonical ABI lays it out: a pointer to (vendor,
    /// version, operations, custom operations), each a (pointer, length)
    /// pair; an operation kind is one byte, a custom operation's name a
    /// (pointer, length) pair. Load calls it once: the module then needs no
    /// component compiled beside it.
    pub(super) fn describe(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<Description> {
        let instance = self.pre.instantiate(&mut *store)?;
        let memory = instance
            .get_module_export(&mut *store, &self.memory)
            .and_then(|e| e.into_memory());
        let describe = instance
            .get_module_export(&mut *store, &self.describe)
            .and_then(|e| e.into_func());
        let (Some(memory), Some(describe)) = (memory, describe) else {
            return Err(wasmtime::format_err!(
                "the instance lacks an export its module has"
            ));
        };
        let returned = describe.typed::<(), i32>(&*store)?.call(&mut *store, ())?;
        let data = memory.data(&*store);
        let lift = Lift { data };
        let record = lift.bytes(address(returned), 32, 4, "the description")?;
        let pair = |at: usize| -> wasmtime::Result<(usize, usize)> {
            let word = |i: usize| {
                record
                    .get(i..i + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX))
                    .ok_or_else(|| wasmtime::format_err!("the description is cut short"))
            };
            Ok((word(at)?, word(at + 4)?))
        };
        let vendor = lift.string(pair(0)?, "vendor id")?;
        let version = lift.string(pair(8)?, "version")?;
        let (ops, count) = pair(16)?;
        let operations = lift
            .bytes(ops, count, 1, "the operations")?
            .iter()
            .map(|kind| {
                // The model declares the kinds in the WIT enum's order.
                OperationKind::ALL
                    .get(usize::from(*kind))
                    .copied()
                    .ok_or_else(|| {
                        wasmtime::format_err!(
                            "operation kind {kind} is not one the interface defines"
                        )
                    })
            })
            .collect::<wasmtime::Result<Vec<_>>>()?;
        let (customs, count) = pair(24)?;
        if count > MAX_CUSTOM_OPERATIONS {
            return Err(wasmtime::format_err!(
                "{count} custom operations; the limit is {MAX_CUSTOM_OPERATIONS}"
            ));
        }
        let names = lift.bytes(customs, count.saturating_mul(8), 4, "the custom operations")?;
        let mut custom_operations = Vec::with_capacity(count);
        for name in names.chunks_exact(8) {
            let word = |b: &[u8]| {
                <[u8; 4]>::try_from(b).map_or(usize::MAX, |b| {
                    usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX)
                })
            };
            let (ptr, len) = name.split_at(4);
            custom_operations.push(lift.string((word(ptr), word(len)), "custom operation")?);
        }
        Ok(Description {
            vendor,
            version,
            operations,
            custom_operations,
        })
    }

    /// Instantiates the module in `store` (fresh, as every evaluation is).
    pub(super) fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<CoreCall> {
        let instance = self.pre.instantiate(&mut *store)?;
        let mut get = |export: &ModuleExport| instance.get_module_export(&mut *store, export);
        let memory = get(&self.memory).and_then(|e| e.into_memory());
        let realloc = get(&self.realloc).and_then(|e| e.into_func());
        let evaluate = get(&self.evaluate).and_then(|e| e.into_func());
        match (memory, realloc, evaluate) {
            (Some(memory), Some(realloc), Some(evaluate)) => Ok(CoreCall {
                memory,
                realloc,
                evaluate,
            }),
            _ => Err(wasmtime::format_err!(
                "the instance lacks an export its module has"
            )),
        }
    }
}

/// One fresh instance's exports.
pub(super) struct CoreCall {
    memory: Memory,
    realloc: Func,
    evaluate: Func,
}

/// Calls `func`, one of the two exports `CoreEntry::new` checked, with
/// `N` `i32` arguments and its one `i32` result.
fn call_i32<const N: usize>(
    store: &mut Store<Sandbox>,
    func: &Func,
    args: [i32; N],
) -> wasmtime::Result<i32> {
    // Through raw values rather than a `TypedFunc`: making one looks the
    // function's type up in the engine's registry (and drops it again) on
    // every evaluation, for a type load already checked.
    let mut slots = args.map(ValRaw::i32);
    #[expect(unsafe_code, reason = "skips a type check done once at load")]
    // SAFETY: `func` is `cabi_realloc` or `evaluate-packed` of an instance
    // of a module `CoreEntry::new` accepted, whose `expect_func` checks
    // made sure it takes exactly `N` `i32`s (`REALLOC_PARAMS`,
    // `EVALUATE_PARAMS`, the `N` its callers pass) and returns one `i32`:
    // `slots` holds the parameters, has room for the result (N >= 1), holds
    // no references, and the call is not made from inside another one.
    unsafe {
        func.call_unchecked(&mut *store, &raw mut slots)?;
    }
    Ok(slots.first().map_or(0, ValRaw::get_i32))
}

impl CoreCall {
    /// Passes `request` to `evaluate-packed` and decodes the decision it
    /// returned. Errors that are not traps mean the module broke the
    /// canonical ABI (a pointer out of bounds or misaligned) or returned
    /// bytes that are not a decision.
    pub(super) fn call(
        self,
        store: &mut Store<Sandbox>,
        request: &[u8],
    ) -> wasmtime::Result<Decision> {
        let len = i32::try_from(request.len())
            .map_err(|_| wasmtime::format_err!("the request exceeds 4 GiB"))?;
        let ptr = call_i32::<REALLOC_PARAMS>(store, &self.realloc, [0, 0, 1, len])?;
        self.memory
            .write(&mut *store, address(ptr), request)
            .map_err(|_| {
                wasmtime::format_err!("`cabi_realloc` returned {ptr:#x}, out of bounds")
            })?;
        let returned = call_i32::<EVALUATE_PARAMS>(store, &self.evaluate, [ptr, len])?;
        if returned % 4 != 0 {
            return Err(wasmtime::format_err!(
                "`evaluate-packed` returned a misaligned pointer {returned:#x}"
            ));
        }
        let data = self.memory.data(&*store);
        let words = address(returned)
            .checked_add(8)
            .and_then(|end| data.get(address(returned)..end))
            .ok_or_else(|| {
                wasmtime::format_err!("`evaluate-packed` returned {returned:#x}, out of bounds")
            })?;
        let (ptr, len) = words.split_at(4);
        let word = |bytes: &[u8]| {
            <[u8; 4]>::try_from(bytes).map_or(0, |b| {
                usize::try_from(u32::from_le_bytes(b)).unwrap_or(usize::MAX)
            })
        };
        let (ptr, len) = (word(ptr), word(len));
        let packed = ptr
            .checked_add(len)
            .and_then(|end| data.get(ptr..end))
            .ok_or_else(|| {
                wasmtime::format_err!(
                    "`evaluate-packed` returned {len} bytes at {ptr:#x}, out of bounds"
                )
            })?;
        // Straight out of the instance's memory, without a copy first.
        decode_decision(packed).map_err(wasmtime::Error::new)
    }
}

/// Reads canonical-ABI values out of an instance's memory, each checked
/// against its bounds and alignment.
struct Lift<'a> {
    data: &'a [u8],
}

impl<'a> Lift<'a> {
    fn bytes(
        &self,
        ptr: usize,
        len: usize,
        align: usize,
        what: &str,
    ) -> wasmtime::Result<&'a [u8]> {
        if !ptr.is_multiple_of(align) {
            return Err(wasmtime::format_err!(
                "{what} is at a misaligned address {ptr:#x}"
            ));
        }
        ptr.checked_add(len)
            .and_then(|end| self.data.get(ptr..end))
            .ok_or_else(|| wasmtime::format_err!("{what}: {len} bytes at {ptr:#x}, out of bounds"))
    }

    /// A string of at most [`MAX_RULE_LEN`] bytes (every string of a
    /// description is an identifier), refused by its length before a byte
    /// of it is copied.
    fn string(&self, (ptr, len): (usize, usize), what: &str) -> wasmtime::Result<String> {
        if len > MAX_RULE_LEN {
            return Err(wasmtime::format_err!(
                "the {what} is {len} bytes; the limit is {MAX_RULE_LEN}"
            ));
        }
        let bytes = self.bytes(ptr, len, 1, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| wasmtime::format_err!("the {what} is not UTF-8: {e}"))
    }
}

/// A wasm32 pointer as an offset into the memory.
fn address(pointer: i32) -> usize {
    // A wasm32 pointer is unsigned; `as u32` reinterprets its bits.
    usize::try_from(pointer as u32).unwrap_or(usize::MAX)
}

fn expect_func(
    module: &Module,
    name: &str,
    params: &[ValType],
    results: &[ValType],
) -> Result<(), LoadError> {
    let matches = match module.get_export(name) {
        Some(ExternType::Func(func)) => {
            func.params().len() == params.len()
                && func.results().len() == results.len()
                && func.params().zip(params).all(|(a, b)| ValType::eq(&a, b))
                && func.results().zip(results).all(|(a, b)| ValType::eq(&a, b))
        }
        _ => false,
    };
    if matches {
        Ok(())
    } else {
        Err(LoadError::Interface(format!(
            "the core module's `{name}` is not a function {params:?} -> {results:?}"
        )))
    }
}
