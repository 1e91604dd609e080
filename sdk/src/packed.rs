//! The request as `evaluate-packed` receives it: the postcard encoding
//! (<https://postcard.jamesmunns.com/wire-format>) of the WIT `request`,
//! fields, cases and enumerators in the order the package declares them.
//!
//! Decoded by hand rather than through serde: in a fresh wasm instance the
//! generic serde path cost about twice the fuel of this one, and decoding is
//! most of what an evaluation does. `unpack` must agree with postcard's
//! encoder; the tests check it on requests using every case.

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
fn owned(text: &[u8]) -> Decoded<String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    if cfg!(debug_assertions) && core::str::from_utf8(text).is_err() {
        return Err(Malformed);
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
    Ok(unsafe { String::from_raw_parts(text.as_ptr().cast_mut(), text.len(), text.len()) })
}

/// A `String` with this text (a checked copy: the global allocator may free
/// it).
#[cfg(not(all(target_arch = "wasm32", feature = "bump-allocator")))]
fn owned(text: &[u8]) -> Decoded<String> {
    core::str::from_utf8(text)
        .map(str::to_owned)
        .map_err(|_| Malformed)
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
    let mut reader = Reader { bytes };
    let request = reader.request()?;
    if reader.bytes.is_empty() {
        Ok(request)
    } else {
        Err(Malformed)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    #[inline]
    fn byte(&mut self) -> Decoded<u8> {
        let (&byte, rest) = self.bytes.split_first().ok_or(Malformed)?;
        self.bytes = rest;
        Ok(byte)
    }

    /// LEB128, at most ten bytes.
    #[inline]
    fn varint(&mut self) -> Decoded<u64> {
        // Nearly every length and tag fits in one byte.
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(byte));
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Decoded<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    fn u32(&mut self) -> Decoded<u32> {
        u32::try_from(self.varint()?).map_err(|_| Malformed)
    }

    /// Zigzag.
    fn s64(&mut self) -> Decoded<i64> {
        let zigzag = self.varint()?;
        let magnitude = i64::try_from(zigzag >> 1).map_err(|_| Malformed)?;
        Ok(if zigzag & 1 == 0 {
            magnitude
        } else {
            -magnitude - 1
        })
    }

    /// A length that cannot exceed the bytes left (every element takes at
    /// least one), so hostile lengths never cause huge allocations.
    #[inline]
    fn len(&mut self) -> Decoded<usize> {
        let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
        if len > self.bytes.len() {
            return Err(Malformed);
        }
        Ok(len)
    }

    #[inline]
    fn string(&mut self) -> Decoded<String> {
        let len = self.len()?;
        let (text, rest) = self.bytes.split_at_checked(len).ok_or(Malformed)?;
        self.bytes = rest;
        owned(text)
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Decoded<T>) -> Decoded<Vec<T>> {
        let len = self.len()?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn option<T>(&mut self, value: impl FnOnce(&mut Self) -> Decoded<T>) -> Decoded<Option<T>> {
        match self.byte()? {
            0 => Ok(None),
            1 => value(self).map(Some),
            _ => Err(Malformed),
        }
    }

    fn request(&mut self) -> Decoded<Request> {
        Ok(Request {
            operation: self.operation()?,
            actor: self.actor()?,
            account: self.account()?,
            now: self.s64()?,
        })
    }

    fn operation(&mut self) -> Decoded<Operation> {
        Ok(match self.u32()? {
            0 => Operation::SetSetting(self.setting()?),
            1 => Operation::Grant(GrantRequest {
                environment: self.string()?,
                scope: self.string()?,
                expires_in: self.option(Self::string)?,
            }),
            2 => Operation::Modify(ModifyRequest {
                grant: self.string()?,
                scope: self.option(Self::string)?,
                expires_in: self.option(Self::string)?,
            }),
            3 => Operation::Revoke(self.string()?),
            4 => Operation::Invite(self.string()?),
            5 => Operation::CreateServiceAccount,
            6 => Operation::SetRights(SetRightsRequest {
                service_account: self.string()?,
                rights: self.string()?,
            }),
            7 => Operation::RemoveServiceAccount(self.string()?),
            8 => Operation::Act(Action {
                name: self.string()?,
                environment: self.option(Self::string)?,
                integration: self.option(Self::string)?,
            }),
            9 => Operation::Custom(CustomRequest {
                name: self.string()?,
                params: self.string()?,
            }),
            _ => return Err(Malformed),
        })
    }

    fn actor(&mut self) -> Decoded<Actor> {
        Ok(match self.u32()? {
            0 => Actor::User(self.string()?),
            1 => Actor::Agent(self.string()?),
            _ => return Err(Malformed),
        })
    }

    fn setting(&mut self) -> Decoded<Setting> {
        Ok(Setting {
            key: self.string()?,
            value: self.string()?,
        })
    }

    fn account(&mut self) -> Decoded<Account> {
        Ok(Account {
            id: self.string()?,
            policy: self.string()?,
            plan: match self.u32()? {
                0 => Plan::Free,
                1 => Plan::Trial,
                2 => Plan::Paid,
                _ => return Err(Malformed),
            },
            environments: self.list(Self::environment)?,
            settings: self.list(Self::setting)?,
            seat_limit: self.option(Self::u32)?,
            users: self.list(Self::user)?,
            grants: self.list(Self::grant)?,
            service_accounts: self.list(Self::service_account)?,
            invitations: self.list(Self::invitation)?,
            entries: self.list(|r| {
                Ok(Entry {
                    key: r.string()?,
                    value: r.string()?,
                })
            })?,
        })
    }

    fn environment(&mut self) -> Decoded<Environment> {
        Ok(Environment {
            id: self.string()?,
            kind: match self.u32()? {
                0 => EnvironmentKind::Production,
                1 => EnvironmentKind::Sandbox,
                _ => return Err(Malformed),
            },
            integrations: self.list(Self::string)?,
        })
    }

    fn user(&mut self) -> Decoded<User> {
        Ok(User {
            id: self.string()?,
            email: self.string()?,
            role: self.string()?,
            access: self.list(|r| {
                Ok(AccessEntry {
                    integration: r.string()?,
                    level: r.string()?,
                })
            })?,
            rights: self.list(Self::string)?,
        })
    }

    fn grant(&mut self) -> Decoded<Grant> {
        Ok(Grant {
            id: self.string()?,
            environment: self.string()?,
            granted_by: self.string()?,
            grantee: self.option(Self::string)?,
            scope: self.string()?,
            expires_at: self.option(Self::s64)?,
            created_at: self.s64()?,
            metadata: self.string()?,
        })
    }

    fn service_account(&mut self) -> Decoded<ServiceAccount> {
        Ok(ServiceAccount {
            id: self.string()?,
            agent_email: self.string()?,
            rights: self.list(Self::string)?,
            origin: self.origin()?,
            description: self.string()?,
            created_by: self.actor()?,
            created_at: self.s64()?,
        })
    }

    fn origin(&mut self) -> Decoded<Origin> {
        Ok(match self.u32()? {
            0 => Origin::Consent,
            1 => Origin::Invite,
            _ => return Err(Malformed),
        })
    }

    fn invitation(&mut self) -> Decoded<Invitation> {
        Ok(Invitation {
            id: self.string()?,
            email: self.string()?,
            invited_by: self.actor()?,
            created_at: self.s64()?,
        })
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
