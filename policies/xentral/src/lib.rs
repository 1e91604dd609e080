//! The xentral-style policy (minimal placeholder while the rules are written).

use chaperone_sdk::{Decision, Description, OperationKind, Policy, Request};

/// The xentral policy.
pub struct Module;

impl Policy for Module {
    fn describe() -> Description {
        Description {
            vendor: "xentral".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec![OperationKind::Act],
            custom_operations: vec![],
        }
    }

    fn evaluate(_request: Request) -> Decision {
        Decision::deny("X", "not yet")
    }
}

chaperone_sdk::export_policy!(Module);
