//! A hostile policy module, built with the SDK like any vendor's, for the
//! host's fault tests. An `act` request's action name picks the attack:
//!
//! | action     | what the module does                                    |
//! |------------|---------------------------------------------------------|
//! | `loop`     | spins forever                                            |
//! | `grow`     | allocates until memory runs out                          |
//! | `recurse`  | recurses without bound                                   |
//! | `trap`     | executes `unreachable` (a panic)                         |
//! | `target`   | revokes a grant that is not in the account's snapshot    |
//! | `message`  | denies with a 4 MiB message                              |
//! | `deny-effect` | denies but carries an effect                          |
//! | `rule`     | names an empty rule id                                   |
//! | anything else | allows, well-behaved                                  |
//!
//! It exports itself with its own glue instead of `export_policy!`, which
//! cuts long messages to the host's limit: a module built without the SDK
//! gets no such help, and the host must still refuse what it returns.

use chaperone_sdk::{
    Decision, Description, Effect, Operation, OperationKind, Policy, Request, Setting,
};

/// The hostile module.
pub struct Module;

impl Policy for Module {
    fn describe() -> Description {
        Description {
            vendor: "hostile".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            operations: vec![OperationKind::Act],
            custom_operations: vec![],
        }
    }

    fn evaluate(request: &Request) -> Decision {
        let Operation::Act(action) = &request.operation else {
            return Decision::deny("HOSTILE", "only acts");
        };
        match action.name.as_str() {
            "loop" => spin(request.now),
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = Vec::<u8>::with_capacity(1 << 20);
                    block.push(1);
                    hoard.push(block);
                    if hoard.len() == usize::MAX {
                        return Decision::allow("HOSTILE", "never");
                    }
                }
            }
            "recurse" => {
                let depth = recurse(request.now as u64);
                Decision::allow("HOSTILE", format!("{depth}"))
            }
            "trap" => trap(),
            "target" => Decision::allow("HOSTILE", "revoking someone else's grant")
                .with_effect(Effect::RevokeGrant("g-of-another-account".into())),
            "message" => Decision::deny("HOSTILE", "x".repeat(4 << 20)),
            "deny-effect" => Decision::deny("HOSTILE", "deny with effect").with_effect(
                Effect::SetSetting(Setting {
                    key: "k".into(),
                    value: "true".into(),
                }),
            ),
            "rule" => Decision::deny("", "no rule"),
            _ => Decision::allow("HOSTILE-OK", "well-behaved"),
        }
    }
}

/// Spins until `seed` becomes odd and even at once (never).
fn spin(seed: i64) -> Decision {
    let mut x = seed as u64 | 1;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        if x == 0 {
            return Decision::allow("HOSTILE", "never");
        }
    }
}

/// Recurses without bound; `black_box` keeps the optimizer from turning
/// the recursion into a loop, and the frames alive.
fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    let frame = core::hint::black_box([n; 64]);
    recurse(n.wrapping_add(1)).wrapping_add(frame.iter().sum::<u64>())
}

/// Traps: a panic aborts to `unreachable` in wasm.
fn trap() -> Decision {
    #[expect(clippy::panic, reason = "the point of this guest is to trap")]
    {
        panic!("hostile guest traps on purpose")
    }
}

/// The export glue, as `export_policy!` writes it but without cutting
/// messages to the host's limit.
struct Export;

impl chaperone_sdk::bindings_root::Guest for Export {
    fn describe() -> Description {
        Module::describe()
    }

    fn evaluate(request: Request) -> Decision {
        Module::evaluate(&request)
    }

    fn evaluate_packed(request: Vec<u8>) -> Vec<u8> {
        chaperone_sdk::pack_as_is(Module::evaluate(&chaperone_sdk::unpack(request)))
    }
}

chaperone_sdk::bindings_root::__export_guest!(Export with_types_in chaperone_sdk::bindings_root);
