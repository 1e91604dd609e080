//! The request as `evaluate-packed` receives it: the postcard encoding
//! (<https://postcard.jamesmunns.com/wire-format>) of the WIT `request`,
//! fields, cases and enumerators in the order the package declares them.
//!
//! Decoded by hand rather than through serde: in a fresh wasm instance the
//! generic serde path cost about twice the fuel of this one, and decoding is
//! most of what an evaluation does. `unpack` must agree with postcard's
//! encoder; the tests check it on requests using every case.

pub mod decision;

use crate::{
    AccessEntry, Account, Action, Actor, CustomRequest, Entry, Environment, EnvironmentKind, Grant,
    GrantRequest, Invitation, ModifyRequest, Operation, Origin, Plan, Request, ServiceAccount,
    SetRightsRequest, Setting, User,
};

/// The bytes are not the encoding of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

type Decoded<T> = Result<T, Malformed>;

/// A `String` with this text.
///
/// With the SDK's bump allocator (wasm32), the `String` points into the
/// request's own bytes instead of copying them: each copy is a call out of
/// the sandbox (`memory.copy`), and a fresh instance never needs the memory
/// back. That is sound only because `Bump` ignores `dealloc` of any block but
/// the last one it handed out, and `unpack` leaks the request's buffer (so no
/// string ever starts at the last block); growing such a `String` reallocates
/// and copies, as for any block that is not the last. As in wit-bindgen's own
/// string lifting, UTF-8 is checked only in debug builds: the host encodes
/// from Rust strings.
#[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
#[inline(always)]
fn owned(text: &[u8], bad: &mut bool) -> String {
    if text.is_empty() {
        return String::new();
    }
    if cfg!(debug_assertions) && core::str::from_utf8(text).is_err() {
        *bad = true;
        return String::new();
    }
    #[expect(
        unsafe_code,
        reason = "zero-copy strings over the leaked request buffer"
    )]
    // SAFETY: `text` lies inside the bytes given to `decode`, which on this
    // target are `'static`: the leaked request buffer, never freed or
    // written again. The global allocator is `Bump`, whose `dealloc` and
    // `realloc` on this pointer never touch these bytes (see above). The
    // bytes are UTF-8: the host encodes Rust strings.
    unsafe {
        String::from_raw_parts(text.as_ptr().cast_mut(), text.len(), text.len())
    }
}

/// A `String` with this text (a checked copy: the global allocator may free
/// it).
#[cfg(not(all(target_arch = "wasm32", feature = "bump-allocator")))]
fn owned(text: &[u8], bad: &mut bool) -> String {
    match core::str::from_utf8(text) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            *bad = true;
            String::new()
        }
    }
}

/// Decodes a whole request; trailing bytes are an error. The strings point
/// into `bytes`, which must therefore live forever (see `owned`).
#[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
pub fn decode(bytes: &'static [u8]) -> Decoded<Request> {
    decode_from(bytes)
}

/// Decodes a whole request; trailing bytes are an error.
#[cfg(not(all(target_arch = "wasm32", feature = "bump-allocator")))]
pub fn decode(bytes: &[u8]) -> Decoded<Request> {
    decode_from(bytes)
}

fn decode_from(bytes: &[u8]) -> Decoded<Request> {
    let mut reader = Reader { bytes, bad: false };
    let request = reader.request();
    if reader.bad || !reader.bytes.is_empty() {
        return Err(Malformed);
    }
    Ok(request)
}

/// A LEB128 varint of up to ten bytes, and the bytes after it; `None`
/// when the bytes end first or it runs past ten bytes. Out of line, and
/// over the slice by value, so the inlined readers keep their state in
/// locals.
#[inline(never)]
fn varint_long(mut bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, bytes));
        }
    }
    None
}

/// A string's bytes and the bytes after them, for a length of any size;
/// `None` when the bytes end first.
#[inline(never)]
fn long_string(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = varint_long(bytes)?;
    rest.split_at_checked(usize::try_from(len).ok()?)
}

/// Reads values off the front of the bytes.
///
/// Errors are sticky rather than returned: a read that fails (bytes run
/// out, a length exceeds what is left, an unknown case or enumerator)
/// sets `bad`, empties the input and yields a placeholder, so every later
/// read is cheap and empty, and `decode_from` refuses the whole request.
/// That keeps a branch-and-return off every field of the hot path (this
/// decoding is most of a policy's work on a typical request).
struct Reader<'a> {
    bytes: &'a [u8],
    bad: bool,
}

impl Reader<'_> {
    /// Marks the input malformed and drops what is left of it.
    #[inline(always)]
    fn fail(&mut self) {
        self.bad = true;
        self.bytes = &[];
    }

    #[inline(always)]
    fn byte(&mut self) -> u8 {
        if let Some((&byte, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            return byte;
        }
        self.fail();
        0
    }

    /// LEB128, at most ten bytes.
    #[inline(always)]
    fn varint(&mut self) -> u64 {
        // Nearly every length and tag fits in one byte.
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return u64::from(byte);
        }
        self.varint_long()
    }

    #[inline(always)]
    fn varint_long(&mut self) -> u64 {
        match varint_long(self.bytes) {
            Some((value, rest)) => {
                self.bytes = rest;
                value
            }
            None => {
                self.fail();
                0
            }
        }
    }

    /// A case or enumerator index (a varint).
    #[inline(always)]
    fn tag(&mut self) -> u64 {
        self.varint()
    }

    #[inline(always)]
    fn u32(&mut self) -> u32 {
        let value = self.varint();
        u32::try_from(value).unwrap_or_else(|_| {
            self.fail();
            0
        })
    }

    /// Zigzag.
    #[inline(always)]
    fn s64(&mut self) -> i64 {
        let zigzag = self.varint();
        // `zigzag >> 1` has its top bit clear, so it always fits.
        let magnitude = (zigzag >> 1) as i64;
        if zigzag & 1 == 0 {
            magnitude
        } else {
            -magnitude - 1
        }
    }

    /// A length that cannot exceed the bytes left (every element takes at
    /// least one), so hostile lengths never cause huge allocations.
    #[inline(always)]
    fn len(&mut self) -> usize {
        let len = self.varint();
        match usize::try_from(len) {
            Ok(len) if len <= self.bytes.len() => len,
            _ => {
                self.fail();
                0
            }
        }
    }

    #[inline(always)]
    fn string(&mut self) -> String {
        // Nearly every string is shorter than 128 bytes: a one-byte length.
        if let Some((&len, rest)) = self.bytes.split_first()
            && len < 0x80
            && let Some((text, rest)) = rest.split_at_checked(usize::from(len))
        {
            self.bytes = rest;
            return owned(text, &mut self.bad);
        }
        match long_string(self.bytes) {
            Some((text, rest)) => {
                self.bytes = rest;
                owned(text, &mut self.bad)
            }
            None => {
                self.fail();
                String::new()
            }
        }
    }

    #[inline(always)]
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let len = self.len();
        // An exact-size iterator: one allocation, no capacity check per item.
        (0..len).map(|_| item(self)).collect()
    }

    #[inline(always)]
    fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match self.byte() {
            0 => None,
            1 => Some(value(self)),
            _ => {
                self.fail();
                None
            }
        }
    }

    #[inline(always)]
    fn request(&mut self) -> Request {
        Request {
            operation: self.operation(),
            actor: self.actor(),
            account: self.account(),
            now: self.s64(),
        }
    }

    #[inline(always)]
    fn operation(&mut self) -> Operation {
        match self.tag() {
            0 => Operation::SetSetting(self.setting()),
            1 => Operation::Grant(GrantRequest {
                environment: self.string(),
                scope: self.string(),
                expires_in: self.option(Self::string),
            }),
            2 => Operation::Modify(ModifyRequest {
                grant: self.string(),
                scope: self.option(Self::string),
                expires_in: self.option(Self::string),
            }),
            3 => Operation::Revoke(self.string()),
            4 => Operation::Invite(self.string()),
            5 => Operation::CreateServiceAccount,
            6 => Operation::SetRights(SetRightsRequest {
                service_account: self.string(),
                rights: self.string(),
            }),
            7 => Operation::RemoveServiceAccount(self.string()),
            8 => Operation::Act(Action {
                name: self.string(),
                environment: self.option(Self::string),
                integration: self.option(Self::string),
            }),
            9 => Operation::Custom(CustomRequest {
                name: self.string(),
                params: self.string(),
            }),
            _ => {
                self.fail();
                Operation::CreateServiceAccount
            }
        }
    }

    #[inline(always)]
    fn actor(&mut self) -> Actor {
        match self.tag() {
            0 => Actor::User(self.string()),
            1 => Actor::Agent(self.string()),
            _ => {
                self.fail();
                Actor::User(String::new())
            }
        }
    }

    #[inline(always)]
    fn setting(&mut self) -> Setting {
        Setting {
            key: self.string(),
            value: self.string(),
        }
    }

    #[inline(always)]
    fn account(&mut self) -> Account {
        Account {
            id: self.string(),
            policy: self.string(),
            plan: match self.tag() {
                0 => Plan::Free,
                1 => Plan::Trial,
                2 => Plan::Paid,
                _ => {
                    self.fail();
                    Plan::Free
                }
            },
            environments: self.list(Self::environment),
            settings: self.list(Self::setting),
            seat_limit: self.option(Self::u32),
            users: self.list(Self::user),
            grants: self.list(Self::grant),
            service_accounts: self.list(Self::service_account),
            invitations: self.list(Self::invitation),
            entries: self.list(|r| Entry {
                key: r.string(),
                value: r.string(),
            }),
        }
    }

    #[inline(always)]
    fn environment(&mut self) -> Environment {
        Environment {
            id: self.string(),
            kind: match self.tag() {
                0 => EnvironmentKind::Production,
                1 => EnvironmentKind::Sandbox,
                _ => {
                    self.fail();
                    EnvironmentKind::Production
                }
            },
            integrations: self.list(Self::string),
        }
    }

    #[inline(always)]
    fn user(&mut self) -> User {
        User {
            id: self.string(),
            email: self.string(),
            role: self.string(),
            access: self.list(|r| AccessEntry {
                integration: r.string(),
                level: r.string(),
            }),
            rights: self.list(Self::string),
        }
    }

    #[inline(always)]
    fn grant(&mut self) -> Grant {
        Grant {
            id: self.string(),
            environment: self.string(),
            granted_by: self.string(),
            grantee: self.option(Self::string),
            scope: self.string(),
            expires_at: self.option(Self::s64),
            created_at: self.s64(),
            metadata: self.string(),
        }
    }

    #[inline(always)]
    fn service_account(&mut self) -> ServiceAccount {
        ServiceAccount {
            id: self.string(),
            agent_email: self.string(),
            rights: self.list(Self::string),
            origin: match self.tag() {
                0 => Origin::Consent,
                1 => Origin::Invite,
                _ => {
                    self.fail();
                    Origin::Consent
                }
            },
            description: self.string(),
            created_by: self.actor(),
            created_at: self.s64(),
        }
    }

    #[inline(always)]
    fn invitation(&mut self) -> Invitation {
        Invitation {
            id: self.string(),
            email: self.string(),
            invited_by: self.actor(),
            created_at: self.s64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Malformed, decode};
    use crate::testing::{
        AccountBuilder, at, by_agent, by_user, grant, invitation, op, request, service_account,
        user,
    };
    use crate::{Operation, Origin, Plan, Request};

    fn account() -> AccountBuilder {
        AccountBuilder::celigo("acct-ü")
            .plan(Plan::Trial)
            .production("prod")
            .sandbox("sb")
            .integration("prod", "int-1")
            .integration("sb", "int-2")
            .setting("allow_non_admin_grants", "true")
            .seat_limit(7)
            .user(
                user("ben", "admin")
                    .access("int-1", "manage")
                    .right("users.read"),
            )
            .user(user("eve", "monitor").email("eve@example.com"))
            .grant(
                grant("g1", "prod", "ben")
                    .scope(r#"{"level":"monitor"}"#)
                    .grantee("agent@vendor.test")
                    .expires_at(at(3, 0))
                    .created_at(-1),
            )
            .grant(grant("g2", "sb", "eve").created_at(i64::MIN))
            .service_account(
                service_account("sa1", "agent@xentral.com")
                    .rights(["admin", "billing"])
                    .origin(Origin::Invite)
                    .description("help")
                    .created_by(by_agent("x@xentral.com")),
            )
            .invitation(invitation("i1", "x@xentral.com", by_user("ben")))
            .entry("pending/1", r#"{"ticket":"T-1"}"#)
    }

    fn every_operation() -> Vec<Operation> {
        vec![
            op::set_setting("k", "5.0"),
            op::grant("prod", "{}", Some("30")),
            op::grant("prod", "{}", None),
            op::modify("g1", Some("{}"), None),
            op::modify("g1", None, Some("1e3")),
            op::revoke("g1"),
            op::invite("a@xentral.com"),
            op::create_service_account(),
            op::set_rights("sa1", r#"["admin"]"#),
            op::remove_service_account("sa1"),
            op::act("flows.read", Some("prod"), Some("int-1")),
            op::act("flows.read", None, None),
            op::custom("request-access", r#"{"ticket":"T-9"}"#),
        ]
    }

    fn requests() -> Vec<Request> {
        let mut all = Vec::new();
        for (i, operation) in every_operation().into_iter().enumerate() {
            let actor = if i % 2 == 0 {
                by_user("ben")
            } else {
                by_agent("agent@vendor.test")
            };
            all.push(request(
                operation.clone(),
                actor.clone(),
                account(),
                at(1, 2),
            ));
            all.push(request(
                operation,
                actor,
                AccountBuilder::xentral("empty"),
                i64::MAX,
            ));
        }
        all
    }

    #[test]
    fn decodes_what_postcard_encodes_for_every_case() {
        for request in requests() {
            let bytes = postcard::to_allocvec(&request).unwrap_or_default();
            assert!(!bytes.is_empty());
            assert_eq!(decode(&bytes), Ok(request));
        }
    }

    #[test]
    fn refuses_truncated_extended_and_corrupted_bytes() {
        let request = requests().swap_remove(0);
        let bytes = postcard::to_allocvec(&request).unwrap_or_default();
        for cut in 0..bytes.len() {
            assert_eq!(decode(bytes.get(..cut).unwrap_or_default()), Err(Malformed));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer), Err(Malformed));
        // An operation case that does not exist.
        let mut bad_case = bytes.clone();
        if let Some(first) = bad_case.first_mut() {
            *first = 10;
        }
        assert_eq!(decode(&bad_case), Err(Malformed));
        // A length far beyond the bytes: refused without allocating it.
        assert_eq!(decode(&[3, 0xff, 0xff, 0xff, 0xff, 0x0f]), Err(Malformed));
    }
}
