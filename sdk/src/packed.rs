//! The request as `evaluate-packed` receives it: the postcard encoding
//! (<https://postcard.jamesmunns.com/wire-format>) of the WIT `request`,
//! fields, cases and enumerators in the order the package declares them.
//!
//! Decoded by hand rather than through serde: in a fresh wasm instance the
//! generic serde path cost about twice the fuel of this one, and decoding is
//! most of what an evaluation does. `unpack` must agree with postcard's
//! encoder; the tests check it on requests using every case.
//!
//! Any bytes are safe to decode: lengths are checked against what is left,
//! and every string is checked to be UTF-8 and copied into a `String` of
//! its own (see `copy`), so the request borrows nothing from the bytes.

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

/// Decodes a whole request; trailing bytes are an error. The request owns
/// its strings: nothing in it borrows `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded<Request> {
    let mut reader = Reader { bytes, bad: false };
    let request = reader.request();
    if reader.bad || !reader.bytes.is_empty() {
        return Err(Malformed);
    }
    Ok(request)
}

/// A copy of the string that is the first `len` bytes of `from` (a string
/// and what follows it in the input), if it is UTF-8.
///
/// `Request` owns its strings (`String`, as wit-bindgen generates it), and
/// a `String` must be an allocation of its own, so the text is copied out
/// of the input. Almost all of the host's strings are ASCII and up to 32
/// bytes long, which this tests and copies as whole words of 8 bytes (one
/// to four, reading past the string into what follows it, then cut to its
/// length): in wasmtime a copy of variable length (`memory.copy`) is a call
/// out of the sandbox, and `str::from_utf8` (a call, then a byte at a time)
/// cost more fuel than the rest of decoding. Longer strings, strings too
/// near the end of the input for whole words, and strings that are not
/// ASCII go to `copy_long`.
#[inline(always)]
fn copy(from: &[u8], len: usize) -> Option<String> {
    let short = if len <= 8 {
        from.first_chunk::<8>()
            .and_then(|words| copy_ascii(words, len))
    } else if len <= 16 {
        from.first_chunk::<16>()
            .and_then(|words| copy_ascii(words, len))
    } else if len <= 32 {
        from.first_chunk::<32>()
            .and_then(|words| copy_ascii(words, len))
    } else {
        None
    };
    match short {
        Some(text) => Some(text),
        None => copy_long(from.get(..len)?),
    }
}

/// The bits of a little-endian word of 8 bytes that are set only when one
/// of them is above 0x7f.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The first `len` bytes of `words` as a `String` (with room for all `N`),
/// if they are all ASCII: tested and copied as whole words, then cut to
/// `len`.
#[inline(always)]
fn copy_ascii<const N: usize>(words: &[u8; N], len: usize) -> Option<String> {
    const { assert!(N.is_multiple_of(8), "whole words") };
    if len > N {
        return None;
    }
    let mut high = 0;
    for (i, word) in words.as_chunks::<8>().0.iter().enumerate() {
        // The word holds `n` bytes of the string: its low bytes (the word
        // is little-endian). For `n == 0` the shift wraps to 0 and the
        // whole word is tested, which is only stricter.
        let n = len.saturating_sub(8 * i).min(8) as u32;
        high |= u64::from_le_bytes(*word) & HIGH.wrapping_shr(64 - 8 * n);
    }
    if high != 0 {
        return None;
    }
    // A boxed array: its size is known, so it is allocated and copied
    // without the calls a `Vec` of variable size may be left with.
    let mut text = (Box::new(*words) as Box<[u8]>).into_vec();
    text.truncate(len);
    #[expect(unsafe_code, reason = "ASCII needs no further UTF-8 check")]
    // SAFETY: `text` is the first `len` bytes of `words` (`len <= N`), each
    // of which is in the part of a word that was just found to have no byte
    // above 0x7f (the words are `words` in order, whole as `N` is a
    // multiple of 8). ASCII is UTF-8.
    Some(unsafe { String::from_utf8_unchecked(text) })
}

/// A copy of `text` as a `String`, if it is UTF-8: tested as ASCII 16 bytes
/// at a time, else checked by `str::from_utf8`.
#[inline(never)]
fn copy_long(text: &[u8]) -> Option<String> {
    const HIGH16: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;
    let (words, _) = text.as_chunks::<16>();
    // The last 16 bytes cover those after the last whole word.
    let mut high = text
        .last_chunk::<16>()
        .map_or(HIGH16, |last| u128::from_le_bytes(*last));
    for word in words {
        high |= u128::from_le_bytes(*word);
    }
    let text = if high & HIGH16 == 0 {
        #[expect(unsafe_code, reason = "ASCII needs no further UTF-8 check")]
        // SAFETY: every byte of `text` is in one of `words` or in the last
        // 16 bytes (fewer than 16 follow the last whole word), none of which
        // is above 0x7f (`high` has `HIGH16` set when there are not 16).
        // ASCII is UTF-8.
        unsafe {
            core::str::from_utf8_unchecked(text)
        }
    } else {
        core::str::from_utf8(text).ok()?
    };
    Some(text.to_owned())
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

/// A string's length, of any size, and the bytes after it; `None` when
/// the bytes end first.
#[inline(never)]
fn string_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = varint_long(bytes)?;
    Some((usize::try_from(len).ok()?, rest))
}

/// Reads values off the front of the bytes.
///
/// Errors are sticky rather than returned: a read that fails (bytes run
/// out, a length exceeds what is left, an unknown case or enumerator)
/// sets `bad`, empties the input and yields a placeholder, so every later
/// read is cheap and empty, and `decode` refuses the whole request.
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

    /// A string: a copy of its text (see `copy`), which must be UTF-8.
    #[inline(always)]
    fn string(&mut self) -> String {
        // Nearly every string is shorter than 128 bytes: a one-byte length.
        let (len, from) = match self.bytes.split_first() {
            Some((&len, from)) if len < 0x80 => (usize::from(len), from),
            _ => string_len(self.bytes).unwrap_or((usize::MAX, &[])),
        };
        let Some(rest) = from.get(len..) else {
            self.fail();
            return String::new();
        };
        self.bytes = rest;
        if len == 0 {
            // No allocation, no copy.
            return String::new();
        }
        copy(from, len).unwrap_or_else(|| {
            self.fail();
            String::new()
        })
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

    /// A request with `text` first in the input (the operation) and last
    /// but for `now` (an entry's value), where fewer than a word's bytes
    /// may follow it.
    fn around(text: &str, now: i64) -> Request {
        request(
            op::revoke(text),
            by_user("u"),
            AccountBuilder::xentral("a").entry("k", text),
            now,
        )
    }

    /// String lengths from `min` to past 128 bytes (a two-byte length):
    /// all of them up to 40, fewer under Miri (which is slow), but each
    /// side of every size of word the decoder copies (8, 16 and 32 bytes).
    fn lengths(min: usize) -> Vec<usize> {
        let many = [63, 64, 65, 127, 128, 129, 300];
        let few = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 128, 300];
        if cfg!(miri) {
            few.into_iter().filter(|&len| len >= min).collect()
        } else {
            (min..=40).chain(many).collect()
        }
    }

    /// Texts of every length in `lengths`, all ASCII or with a character of
    /// two, three or four bytes at the start, in the middle or at the end.
    fn texts() -> Vec<String> {
        let mut texts = Vec::new();
        for len in lengths(0) {
            let ascii = "abcdefghijklmnopqrstuvwxyz0123456789-._@"
                .chars()
                .cycle()
                .take(len)
                .collect::<String>();
            texts.push(ascii.clone());
            let (head, tail) = ascii.split_at(len / 2);
            for wide in ["é", "€", "😀"] {
                texts.push(format!("{wide}{ascii}"));
                texts.push(format!("{head}{wide}{tail}"));
                texts.push(format!("{ascii}{wide}"));
            }
        }
        texts
    }

    #[test]
    fn decodes_strings_of_any_length_text_and_place() {
        for text in texts() {
            for now in [0, i64::MIN] {
                let request = around(&text, now);
                let bytes = postcard::to_allocvec(&request).unwrap_or_default();
                assert_eq!(decode(&bytes), Ok(request), "{text:?}");
            }
        }
    }

    #[test]
    fn refuses_strings_that_are_not_utf8() {
        // A lone continuation byte, a byte that is never UTF-8, a sequence
        // cut short, an overlong encoding and a surrogate.
        let bad: [&[u8]; 5] = [
            &[0x80],
            &[0xff],
            &[0xe2, 0x82],
            &[0xc0, 0x80],
            &[0xed, 0xa0, 0x80],
        ];
        for len in lengths(1) {
            let text = "Q".repeat(len);
            let positions: Vec<usize> = if cfg!(miri) {
                vec![0, len / 2, len - 1]
            } else {
                (0..len).collect()
            };
            for now in [0, i64::MIN] {
                let bytes = postcard::to_allocvec(&around(&text, now)).unwrap_or_default();
                // Where the operation's text and the entry's are.
                let places: Vec<usize> = bytes
                    .windows(len)
                    .enumerate()
                    .filter(|(_, window)| window.iter().all(|&b| b == b'Q'))
                    .map(|(at, _)| at)
                    .filter(|&at| at == 0 || bytes.get(at - 1) != Some(&b'Q'))
                    .collect();
                assert_eq!(places.len(), 2, "{len}");
                for &place in &places {
                    for &position in &positions {
                        for sequence in bad {
                            // The sequence, or as much of it as fits.
                            let mut corrupt = bytes.clone();
                            let at = place + position;
                            for (i, &byte) in sequence.iter().take(len - position).enumerate() {
                                if let Some(target) = corrupt.get_mut(at + i) {
                                    *target = byte;
                                }
                            }
                            let text = corrupt.get(place..place + len).unwrap_or_default();
                            assert!(core::str::from_utf8(text).is_err());
                            assert_eq!(decode(&corrupt), Err(Malformed), "{len} {position}");
                        }
                    }
                }
            }
        }
    }
}
