//! A hostile policy module, built with the SDK like any vendor's, for the
//! host's fault tests. An `act` request's action name picks the attack:
//!
//! | action     | what the module does                                   |
//! |------------|---------------------------------------------------------|
//! | `loop`     | spins forever                                           |
//! | `grow`     | allocates until memory runs out                         |
//! | `recurse`  | recurses without bound                                  |
//! | `trap`     | executes `unreachable` (a panic)                        |
//! | `target`   | revokes a grant that is not in the account's snapshot   |
//! | `message`  | denies with a 4 MiB message                             |
//! | `deny-effect` | denies but carries an effect                         |
//! | `rule`     | names an empty rule id                                  |
//! | `many-rules` | allows listing 64Ki empty rule ids (typed path)      |
//! | `control-keys` | allows 64 `put-entry` effects, each key 64 KiB of U+0001 (within every limit of the contract; its record would be 25 MB) |
//! | `zero-rules` | `evaluate-packed`: 8 MiB of zeros after an 8M rule count |
//! | `zero-effects` | `evaluate-packed`: 8 MiB of zeros after an 8M effect count |
//! | `long-rule` | `evaluate-packed`: a rule id that claims 8 MiB and has them |
//! | `long-message` | `evaluate-packed`: an 8 MiB message |
//! | anything else | allows, well-behaved                                 |
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
            "many-rules" => {
                let mut decision = Decision::allow("HOSTILE", "many rules");
                decision.rules = vec![String::new(); 1 << 16];
                decision
            }
            "control-keys" => {
                let mut decision = Decision::allow("HOSTILE", "control keys");
                for i in 0..64u8 {
                    let mut key = "\u{1}".repeat((64 << 10) - 1);
                    key.push(char::from(b'a' + i % 26));
                    decision = decision.with_effect(Effect::PutEntry(chaperone_sdk::Entry {
                        key,
                        value: "1".into(),
                    }));
                }
                decision
            }
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
        let request = chaperone_sdk::unpack(request);
        if let Operation::Act(action) = &request.operation
            && let Some(bytes) = raw_decision(&action.name)
        {
            return bytes;
        }
        chaperone_sdk::pack_as_is(Module::evaluate(&request))
    }
}

/// The bytes the packed-only attacks return instead of a decision's
/// encoding: each starts as a decision would (allow, rule `R`) and then
/// claims 8 Mi of something and has the bytes for it.
fn raw_decision(attack: &str) -> Option<Vec<u8>> {
    // Zeroing costs the guest a fuel unit a byte: 8 MiB leaves room.
    const HUGE: usize = 8 << 20;
    let varint = |out: &mut Vec<u8>, mut value: usize| {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    };
    // allow, rule "R"
    let mut out = Vec::with_capacity(HUGE + 16);
    out.extend_from_slice(&[0u8, 1, b'R']);
    match attack {
        "zero-rules" => {
            out.push(0); // message ""
            varint(&mut out, HUGE);
        }
        "zero-effects" => {
            out.extend([0, 0]); // message "", no rules
            varint(&mut out, HUGE);
        }
        "long-rule" => {
            out.truncate(1);
            varint(&mut out, HUGE);
        }
        "long-message" => varint(&mut out, HUGE),
        _ => return None,
    }
    out.resize(out.len() + HUGE, 0);
    Some(out)
}

chaperone_sdk::bindings_root::__export_guest!(Export with_types_in chaperone_sdk::bindings_root);
