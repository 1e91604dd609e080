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

fn has_component_type(bytes: &[u8]) -> bool {
    Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(s)) if s.name().starts_with("component-type"))
    })
}
