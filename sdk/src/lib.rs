//! Write a Chaperone policy module.
//!
//! A policy decides, for one vendor, who may grant support access to a
//! customer account and what support agents may then do. It is compiled to
//! WebAssembly and run by the Chaperone host in a sandbox: it imports nothing,
//! is handed the account snapshot and the time, and returns a [`Decision`].
//!
//! A complete policy, in one file (`src/lib.rs` of a `cdylib` crate):
//!
//! ```
//! use chaperone_sdk::{
//!     Action, Actor, Decision, Description, Effect, NewGrant, Operation, OperationKind,
//!     Policy, Request, json, time,
//! };
//!
//! /// Owners may open a 24-hour window; agents may then read anything.
//! struct ReadOnlyDay;
//!
//! impl Policy for ReadOnlyDay {
//!     fn describe() -> Description {
//!         Description {
//!             vendor: "read-only-day".into(),
//!             version: "1.0.0".into(),
//!             operations: vec![OperationKind::Grant, OperationKind::Act],
//!             custom_operations: vec![],
//!         }
//!     }
//!
//!     fn evaluate(request: &Request) -> Decision {
//!         match (&request.operation, &request.actor) {
//!             (Operation::Grant(g), Actor::User(id)) => {
//!                 let owner = request.account.user(id).is_some_and(|u| u.role == "owner");
//!                 if !owner {
//!                     return Decision::deny("RO-WHO", "only an owner may grant");
//!                 }
//!                 Decision::allow("RO-WHO", "owner opened a 24-hour window").with_effect(
//!                     Effect::CreateGrant(NewGrant {
//!                         environment: g.environment.clone(),
//!                         grantee: None,
//!                         scope: json::to_text(&json::Value::Null),
//!                         expires_at: Some(request.now + time::DAY),
//!                         metadata: "null".into(),
//!                     }),
//!                 )
//!             }
//!             (Operation::Act(Action { name, .. }), Actor::Agent(_)) => {
//!                 if request.account.grants.is_empty() {
//!                     Decision::deny("RO-GRANT", "no open window")
//!                 } else if name.ends_with(".read") {
//!                     Decision::allow("RO-READ", "reads are allowed")
//!                 } else {
//!                     Decision::deny("RO-READ", format!("`{name}` is not a read"))
//!                 }
//!             }
//!             _ => Decision::deny("RO-WHO", "not handled"),
//!         }
//!     }
//! }
//!
//! chaperone_sdk::export_policy!(ReadOnlyDay);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-unknown-unknown`; the
//! `.wasm` file that produces is what `chaperone policy check` and the host
//! load.
//!
//! # Concepts
//!
//! - A [`Request`] carries the [`Operation`] and its parameters, the
//!   [`Actor`] (a customer user by id, or a vendor agent by email), a snapshot
//!   of the one [`Account`] it concerns and `now`. Expired and revoked grants,
//!   removed service accounts and used invitations have already been filtered
//!   out by the host.
//! - A [`Decision`] is allow or deny, the id of the rule that decided, a
//!   message, and on an allow the [`Effect`]s the host applies (in the same
//!   transaction as the decision's audit record). A message may quote the
//!   request freely: the export glue cuts one longer than
//!   [`MAX_MESSAGE_LEN`] bytes, the most the host accepts.
//! - Values the policy validates itself (scopes, expiries, rights, setting
//!   values) arrive as JSON text, exactly as the caller gave them; parse them
//!   with [`json::parse`] and test integers with [`json::as_integer`].
//! - Policies never read a clock: `now` is in the request, in milliseconds
//!   since the Unix epoch (see [`time`]).
//!
//! # Cost
//!
//! Every evaluation runs in a fresh instance under a fuel budget, so what a
//! policy does on its common paths is latency for every request:
//!
//! - The SDK decodes the request once, copying each of its strings into an
//!   allocation of its own (a cost that grows with the snapshot), then lends
//!   it to the policy and never frees it: keep references into it rather
//!   than cloning it, which copies every string again.
//! - The first call through each function pointer in a fresh instance is a
//!   call out to the host (the instance's table is filled lazily), and
//!   `format!` makes several: on a hot path, build a message with
//!   `["grant `", id, "` allows `", name, "`"].concat()` instead. `chaperone
//!   policy check` reports the fuel each operation uses.
//! - After each evaluation the host resets the pages the instance wrote, and
//!   finding them costs more the larger the memory: the built-in modules
//!   link with a 64 KiB stack and 192 KiB of initial memory
//!   (`-C link-arg=-zstack-size=65536 -C link-arg=--initial-memory=196608`
//!   in `RUSTFLAGS`) instead of the default 1 MiB stack.

#![deny(missing_docs)]

mod bindings {
    #![expect(
        missing_docs,
        reason = "generated by wit-bindgen from the documented WIT package"
    )]

    wit_bindgen::generate!({
        path: "wit",
        world: "sdk-policy",
        pub_export_macro: true,
        export_macro_name: "__export_guest",
        default_bindings_module: "chaperone_sdk::bindings_root",
        // `Serialize`: the tests check `packed` against postcard's encoder.
        additional_derives: [PartialEq, serde::Serialize],
    });
}

#[doc(hidden)]
pub mod bindings_root {
    //! The path the export macro's generated code refers to.
    pub use crate::bindings::*;
}

// Also compiled for the SDK's native tests, over a stand-in for linear
// memory.
#[cfg(any(all(target_arch = "wasm32", feature = "bump-allocator"), test))]
pub mod alloc;
mod helpers;
mod packed;
pub mod testing;

#[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
#[global_allocator]
static ALLOCATOR: alloc::Bump = alloc::Bump::new();

pub use bindings::chaperone::policy::types::{
    AccessEntry, Account, Action, Actor, CustomRequest, Decision, Description, Effect, Entry,
    Environment, EnvironmentKind, Grant, GrantRequest, GrantUpdate, Invitation, ModifyRequest,
    NewGrant, NewServiceAccount, Operation, OperationKind, Origin, Plan, Request, RightsUpdate,
    ServiceAccount, SetRightsRequest, Setting, Timestamp, User, Verdict,
};
pub use helpers::{json, time};

/// A vendor's policy: implement it, then export it with [`export_policy!`].
pub trait Policy {
    /// Who the module is and what it handles.
    fn describe() -> Description;

    /// Decide one request. Called in a fresh instance for every request.
    ///
    /// The request is borrowed: the SDK owns it and, in a wasm instance,
    /// never frees it (the instance is thrown away after this call, so
    /// walking the snapshot to free it would be wasted work).
    fn evaluate(request: &Request) -> Decision;
}

/// Exports a type implementing [`Policy`] as the module's `describe`,
/// `evaluate` and `evaluate-packed` (the same decision, with the request and
/// the decision passed as byte strings: much cheaper to hand across).
///
/// ```text
/// chaperone_sdk::export_policy!(MyPolicy);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            struct ChaperoneExport;

            impl $crate::bindings_root::Guest for ChaperoneExport {
                fn describe() -> $crate::Description {
                    <$policy as $crate::Policy>::describe()
                }

                fn evaluate(request: $crate::Request) -> $crate::Decision {
                    let decision = <$policy as $crate::Policy>::evaluate(&request);
                    $crate::discard(request);
                    $crate::bounded(decision)
                }

                fn evaluate_packed(request: ::std::vec::Vec<u8>) -> ::std::vec::Vec<u8> {
                    let request = $crate::unpack(request);
                    let decision = <$policy as $crate::Policy>::evaluate(&request);
                    $crate::discard(request);
                    $crate::pack(decision)
                }
            }

            $crate::bindings_root::__export_guest!(
                ChaperoneExport with_types_in $crate::bindings_root
            );
        };
    };
}

/// The longest message the host accepts in a decision, in bytes. A longer
/// one is a broken contract, which the host turns into a fail-closed denial.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A decision with its message cut to [`MAX_MESSAGE_LEN`] bytes (at a
/// character boundary, ending in `…`). Messages often quote the request
/// (an address, an action name), and the request's text is the caller's:
/// a long one must not turn a policy's answer into a host error. The export
/// glue applies this to every decision.
#[doc(hidden)]
#[inline]
pub fn bounded(mut decision: Decision) -> Decision {
    if decision.message.len() > MAX_MESSAGE_LEN {
        cut_message(&mut decision.message);
    }
    decision
}

#[cold]
fn cut_message(message: &mut String) {
    const ELLIPSIS: &str = "…";
    let mut end = MAX_MESSAGE_LEN - ELLIPSIS.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(ELLIPSIS);
}

/// Lets go of a value an export is done with (the request's bytes once
/// decoded, the request after its decision, the decision once packed). With
/// the SDK's bump allocator (a wasm instance used for one evaluation)
/// nothing is freed: dropping would only walk the whole value to hand
/// memory back to an allocator that keeps it anyway. Elsewhere the value is
/// dropped as usual.
#[doc(hidden)]
pub fn discard<T>(value: T) {
    #[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
    core::mem::forget(value);
    #[cfg(not(all(target_arch = "wasm32", feature = "bump-allocator")))]
    drop(value);
}

/// Encodes a decision as `evaluate-packed` returns it (its postcard
/// encoding).
#[doc(hidden)]
pub fn pack(decision: Decision) -> Vec<u8> {
    pack_as_is(bounded(decision))
}

/// [`pack`] without cutting the message: what a module with glue of its
/// own may return (the host's tests use it to check the host refuses it).
#[doc(hidden)]
pub fn pack_as_is(decision: Decision) -> Vec<u8> {
    let packed = packed::decision::encode(&decision);
    discard(decision);
    packed
}

/// Decodes a request passed to `evaluate-packed` (its postcard encoding).
///
/// The host always sends a valid encoding of this package's `request`, so
/// bytes that do not decode (a string that is not UTF-8 among them) mean the
/// module and the host disagree on the interface: the module traps (on
/// wasm32), which the host turns into a fail-closed denial. Any bytes are
/// safe to pass: they are checked, not trusted.
#[doc(hidden)]
pub fn unpack(bytes: Vec<u8>) -> Request {
    // The request owns copies of its strings: nothing in it borrows `bytes`.
    let decoded = packed::decode(&bytes);
    discard(bytes);
    match decoded {
        Ok(request) => request,
        Err(packed::Malformed) => undecodable(),
    }
}

#[cfg(target_arch = "wasm32")]
fn undecodable() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
#[expect(clippy::panic, reason = "native builds only run the SDK's own tests")]
fn undecodable() -> ! {
    panic!("the packed request does not decode")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_message(message: String) -> Decision {
        Decision::deny("R", message)
    }

    #[test]
    fn messages_up_to_the_limit_are_kept_as_they_are() {
        for len in [0, 1, MAX_MESSAGE_LEN - 1, MAX_MESSAGE_LEN] {
            let message = "a".repeat(len);
            assert_eq!(bounded(with_message(message.clone())).message, message);
        }
    }

    #[test]
    fn longer_messages_are_cut_at_a_character_boundary() {
        // One byte over, a long quoted input, and multi-byte characters
        // straddling the cut at every offset.
        let mut messages = vec!["a".repeat(MAX_MESSAGE_LEN + 1), "x".repeat(1 << 20)];
        for pad in 0..4 {
            messages.push(format!(
                "{}{}",
                "a".repeat(pad),
                "ü€😀".repeat(MAX_MESSAGE_LEN)
            ));
        }
        for message in messages {
            let cut = bounded(with_message(message.clone())).message;
            assert!(cut.len() <= MAX_MESSAGE_LEN, "{}", cut.len());
            assert!(cut.len() > MAX_MESSAGE_LEN - 8, "{}", cut.len());
            let kept = cut
                .strip_suffix('…')
                .unwrap_or_else(|| unreachable!("no ellipsis"));
            assert!(message.starts_with(kept));
        }
    }
}
