//! Everything that can go wrong loading or evaluating a policy module.
//!
//! These enums are deliberately exhaustive: every caller decides what each
//! failure means (the service turns every [`EvalError`] into a fail-closed
//! deny with rule `HOST-POLICY-ERROR`).

use std::time::Duration;

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Zero bytes.
    #[error("the module is empty (0 bytes)")]
    Empty,
    /// Larger than [`Limits::module_bytes`](crate::Limits::module_bytes).
    #[error("the module is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The module's size.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// Not a WebAssembly binary at all.
    #[error("not a WebAssembly module: the file does not start with the `\\0asm` magic bytes")]
    NotWasm,
    /// Fails WebAssembly validation.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// Over one of the limits checked before compiling
    /// ([`COMPILE_LIMITS`](crate::COMPILE_LIMITS)).
    #[error("the module has {found} {what}; at most {limit} are compiled")]
    OverLimit {
        /// What is counted.
        what: &'static str,
        /// How many the module has.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// A core module without the component-type section that wit-bindgen
    /// emits, so its interface cannot be known.
    #[error(
        "the core module carries no `component-type` custom section: build it with the \
         chaperone-sdk (wit-bindgen) so the host knows its interface"
    )]
    NoComponentType,
    /// Imports something; a policy may import nothing.
    #[error("the module imports {}: a policy module may import nothing", list(.0))]
    Imports(Vec<String>),
    /// An export the policy world requires is missing.
    #[error("the module does not export `{0}`, which the `chaperone:policy@0.1.0` world requires")]
    MissingExport(String),
    /// The core module could not be turned into a component.
    #[error("cannot turn the core module into a component: {0}")]
    Componentize(String),
    /// Compilation failed.
    #[error("cannot compile the module: {0}")]
    Compile(String),
    /// The exports do not have the types of the policy world.
    #[error("the module's exports do not match `chaperone:policy@0.1.0`: {0}")]
    Interface(String),
    /// `describe()` failed.
    #[error("`describe()` failed: {0}")]
    Describe(#[source] EvalError),
    /// `describe()` returned something unusable.
    #[error("`describe()` returned an invalid description: {0}")]
    BadDescription(String),
}

/// Why an evaluation produced no usable decision.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The module used up its fuel (instruction budget).
    #[error("the module ran out of fuel after {0} units")]
    FuelExhausted(u64),
    /// The wall-clock backstop fired.
    #[error("the module exceeded its {0:?} time limit")]
    Deadline(Duration),
    /// The module asked for more memory than it may have.
    #[error("the module exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    /// The module overflowed its stack.
    #[error("the module overflowed its stack")]
    StackOverflow,
    /// The module trapped (`unreachable`, out-of-bounds access, ...).
    #[error("the module trapped: {0}")]
    Trap(String),
    /// The host could not read what the module returned.
    #[error("the module returned output the host cannot decode: {0}")]
    BadOutput(String),
    /// The decision breaks the interface contract.
    #[error("the decision breaks the interface contract: {0}")]
    Contract(String),
    /// No fresh instance could be made (e.g. the instance pool is full).
    #[error("cannot instantiate the module: {0}")]
    Instantiate(String),
}

/// Why the runtime itself could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the WebAssembly engine: {0}")]
pub struct RuntimeError(pub(crate) String);

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
