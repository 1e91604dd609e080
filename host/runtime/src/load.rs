//! From bytes to a component the engine can compile: validation, import and
//! export checks, and componentizing a wit-bindgen core module.

use std::borrow::Cow;

use wasmparser::component_types::{ComponentAnyTypeId, ComponentEntityType};
use wasmparser::types::Types;
use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use super::LoadError;

/// What the bytes turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleFormat {
    /// A component.
    Component,
    /// A core module with wit-bindgen's component-type section, turned into
    /// a component at load.
    CoreModule,
}

/// A module that passed the static checks.
#[derive(Debug)]
pub struct Checked<'a> {
    pub format: ModuleFormat,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// The component to compile.
    pub component: Cow<'a, [u8]>,
}

/// What a module may hold, checked before it is compiled (compiling is the
/// one step of loading that no fuel meters: its cost grows with these).
/// A vendor can check a module against them before uploading it (`chaperone
/// policy inspect`). The built-in modules hold about a twentieth of each.
pub const COMPILE_LIMITS: CompileSize = CompileSize {
    functions: 5_000,
    code_bytes: 4 << 20,
    function_bytes: 512 << 10,
    locals: 4_096,
    data_segments: 1_000,
    data_bytes: 8 << 20,
    globals: 1_000,
    element_segments: 1_000,
};

/// What a module holds, by the measures compiling costs grow with (and
/// [`COMPILE_LIMITS`] bounds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompileSize {
    /// Functions defined.
    pub functions: u64,
    /// Bytes of code.
    pub code_bytes: u64,
    /// The largest function body, in bytes.
    pub function_bytes: u64,
    /// The most locals of one function.
    pub locals: u64,
    /// Data segments.
    pub data_segments: u64,
    /// Bytes of data segments.
    pub data_bytes: u64,
    /// Globals.
    pub globals: u64,
    /// Element segments.
    pub element_segments: u64,
}

/// Measures a module (valid WebAssembly: [`survey`] first) without
/// compiling it.
pub fn measure(bytes: &[u8]) -> Result<CompileSize, LoadError> {
    let invalid = |e: wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let mut size = CompileSize::default();
    let count = |n: u32| u64::from(n);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::FunctionSection(reader) => size.functions += count(reader.count()),
            Payload::CodeSectionEntry(body) => {
                let len = body.range().len() as u64;
                size.code_bytes += len;
                size.function_bytes = size.function_bytes.max(len);
                let mut locals = 0u64;
                for local in body.get_locals_reader().map_err(invalid)? {
                    locals += count(local.map_err(invalid)?.0);
                }
                size.locals = size.locals.max(locals);
            }
            Payload::DataSection(reader) => {
                size.data_segments += count(reader.count());
                for data in reader {
                    size.data_bytes += data.map_err(invalid)?.data.len() as u64;
                }
            }
            Payload::GlobalSection(reader) => size.globals += count(reader.count()),
            Payload::ElementSection(reader) => size.element_segments += count(reader.count()),
            _ => {}
        }
    }
    Ok(size)
}

/// Refuses a module over any of [`COMPILE_LIMITS`], naming the first.
pub fn within_limits(size: &CompileSize) -> Result<(), LoadError> {
    let limits = COMPILE_LIMITS;
    let checks = [
        ("defined functions", size.functions, limits.functions),
        ("bytes of code", size.code_bytes, limits.code_bytes),
        (
            "bytes in its largest function",
            size.function_bytes,
            limits.function_bytes,
        ),
        ("locals in one function", size.locals, limits.locals),
        ("data segments", size.data_segments, limits.data_segments),
        ("bytes of data segments", size.data_bytes, limits.data_bytes),
        ("globals", size.globals, limits.globals),
        (
            "element segments",
            size.element_segments,
            limits.element_segments,
        ),
    ];
    for (what, found, limit) in checks {
        if found > limit {
            return Err(LoadError::OverLimit { what, found, limit });
        }
    }
    Ok(())
}

/// The exports the `policy` world requires.
pub const REQUIRED_EXPORTS: &[&str] = &["describe", "evaluate"];

/// Inspects bytes without refusing imports or missing exports: what
/// `policy inspect` shows.
pub fn survey(bytes: &[u8]) -> Result<(ModuleFormat, Vec<String>, Vec<String>), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm);
    }
    let types = Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| LoadError::Invalid(e.to_string()))?;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut depth = 0usize;
    let mut format = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && format.is_none() {
                    format = Some(match encoding {
                        wasmparser::Encoding::Component => ModuleFormat::Component,
                        wasmparser::Encoding::Module => ModuleFormat::CoreModule,
                    });
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ImportSection(reader) if depth == 1 => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| LoadError::Invalid(e.to_string()))?;
                    imports.push(format!("{}::{}", import.module, import.name));
                }
            }
            Payload::ExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| LoadError::Invalid(e.to_string()))?;
                    exports.push(export.name.to_string());
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| LoadError::Invalid(e.to_string()))?;
                    if !names_types_only(&types, import.name.name) {
                        imports.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| LoadError::Invalid(e.to_string()))?;
                    exports.push(export.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let format = format.ok_or_else(|| LoadError::Invalid("no version header".into()))?;
    Ok((format, imports, exports))
}

/// Whether a component import only names types: a type, or an instance
/// with exports, all of them types; resources excepted (the host would
/// have to implement them). A component whose exports use types of an
/// interface imports them so (what wit-component makes of the `policy`
/// world's `use types.{...}`); such an import links nothing and gives the
/// module no capability, so it does not count as an import.
fn names_types_only(types: &Types, name: &str) -> bool {
    let plain_type = |ty: &ComponentEntityType| {
        matches!(ty, ComponentEntityType::Type { referenced, .. }
            if !matches!(referenced, ComponentAnyTypeId::Resource(_)))
    };
    match types.component_item_for_import(name).map(|item| &item.ty) {
        Some(ComponentEntityType::Instance(id)) => {
            let exports = &types[*id].exports;
            !exports.is_empty() && exports.values().all(|item| plain_type(&item.ty))
        }
        Some(ty) => plain_type(ty),
        None => false,
    }
}

/// Runs every static check and produces the component to compile.
pub fn check(bytes: &[u8]) -> Result<Checked<'_>, LoadError> {
    let (format, imports, exports) = survey(bytes)?;
    within_limits(&measure(bytes)?)?;
    if !imports.is_empty() {
        return Err(LoadError::Imports(imports));
    }
    for required in REQUIRED_EXPORTS {
        if !exports.iter().any(|e| e == required) {
            return Err(LoadError::MissingExport((*required).to_string()));
        }
    }
    let component = match format {
        ModuleFormat::Component => Cow::Borrowed(bytes),
        ModuleFormat::CoreModule => {
            if !has_component_type(bytes) {
                return Err(LoadError::NoComponentType);
            }
            let encoded = wit_component::ComponentEncoder::default()
                .validate(true)
                .module(bytes)
                .and_then(|mut encoder| encoder.encode())
                .map_err(|e| LoadError::Componentize(format!("{e:#}")))?;
            Cow::Owned(encoded)
        }
    };
    Ok(Checked {
        format,
        exports,
        component,
    })
}

/// Whether the component's `evaluate-packed` export, if it has one, is
/// `func(list<u8>) -> list<u8>`: checked from its types, without compiling
/// it (the direct path then calls the core export by its canonical-ABI
/// shape, which other types could share).
pub fn check_packed_type(component: &[u8]) -> Result<(), LoadError> {
    use wasmparser::PrimitiveValType;
    use wasmparser::component_types::{ComponentDefinedType, ComponentValType};
    let types = Validator::new_with_features(WasmFeatures::all())
        .validate_all(component)
        .map_err(|e| LoadError::Invalid(e.to_string()))?;
    let Some(item) = types.component_item_for_export("evaluate-packed") else {
        return Ok(());
    };
    let bytes = |ty: &ComponentValType| match ty {
        ComponentValType::Type(id) => matches!(
            &types[*id],
            ComponentDefinedType::List {
                element: ComponentValType::Primitive(PrimitiveValType::U8),
                ..
            }
        ),
        ComponentValType::Primitive(_) => false,
    };
    let ok = match &item.ty {
        ComponentEntityType::Func(id) => {
            let func = &types[*id];
            !func.async_
                && func.params.len() == 1
                && func.params.first().is_some_and(|(_, ty)| bytes(ty))
                && func.result.as_ref().is_some_and(bytes)
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(LoadError::Interface(
            "`evaluate-packed` is not `func(request: list<u8>) -> list<u8>`".into(),
        ))
    }
}

fn has_component_type(bytes: &[u8]) -> bool {
    Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(s)) if s.name().starts_with("component-type"))
    })
}
