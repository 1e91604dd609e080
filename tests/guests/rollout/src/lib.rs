//! The `rollout` test vendor: one policy in two versions, to install,
//! compare (`policy diff`), activate and roll back in the registry's tests.
//!
//! | operation | 1.0.0 | 2.0.0 (feature `v2`) |
//! |---|---|---|
//! | `act` | allow `RO-ACT` | deny `RO-FREEZE` for an action whose name starts with `delete`; else allow `RO-ACT` |
//! | `revoke` | allow `RO-REVOKE` (revoking the grant) if it is in the snapshot, else deny `RO-REVOKE` | the same |

use chaperone_sdk::{Decision, Description, Effect, Operation, OperationKind, Policy, Request};

/// The module.
pub struct Module;

/// Its version.
#[cfg(not(feature = "v2"))]
const VERSION: &str = "1.0.0";
/// Its version.
#[cfg(feature = "v2")]
const VERSION: &str = "2.0.0";

impl Policy for Module {
    fn describe() -> Description {
        Description {
            vendor: "rollout".into(),
            version: VERSION.into(),
            operations: vec![OperationKind::Act, OperationKind::Revoke],
            custom_operations: vec![],
        }
    }

    fn evaluate(request: &Request) -> Decision {
        match &request.operation {
            Operation::Act(action) => {
                if cfg!(feature = "v2") && action.name.starts_with("delete") {
                    Decision::deny("RO-FREEZE", "deleting is frozen in 2.0.0")
                } else {
                    Decision::allow("RO-ACT", format!("`{}` allowed", action.name))
                }
            }
            Operation::Revoke(grant) => {
                if request.account.grants.iter().any(|g| g.id == *grant) {
                    Decision::allow("RO-REVOKE", "revoked")
                        .with_effect(Effect::RevokeGrant(grant.clone()))
                } else {
                    Decision::deny("RO-REVOKE", format!("no active grant `{grant}`"))
                }
            }
            _ => Decision::deny("RO-UNSUPPORTED", "not decided here"),
        }
    }
}

chaperone_sdk::export_policy!(Module);
