//! A JSON scanner that builds nothing: it checks that bytes are JSON in the
//! sense of `docs/audit-format.md` ("Conventions"), token by token, without
//! allocating, so that the verifiers can check every record's bytes at about
//! the speed of hashing them.
//!
//! It checks the grammar of RFC 8259, that strings hold no control
//! character and no unpaired surrogate escape, that every number is finite
//! as a 64-bit float, that no object has two members of the same name
//! (compared after unescaping), and that arrays and objects nest no deeper
//! than a limit. It allocates only for an object of more than
//! [`INLINE_NAMES`] members or a member name with an escape.

use std::borrow::Cow;
use std::collections::HashSet;

/// A position in bytes being checked. Outside strings only ASCII tokens
/// pass; inside them, bytes from 0x80 up must form UTF-8 sequences. So bytes
/// that scan are UTF-8.
pub(crate) struct Scanner<'b> {
    bytes: &'b [u8],
    pos: usize,
    /// Whether whitespace may come between tokens (a record has none).
    whitespace: bool,
}

/// Whether `bytes` is JSON whose arrays and objects nest at most
/// `max_depth` levels deep (the outermost value is level 1), with
/// whitespace allowed between tokens.
pub(crate) fn is_json(bytes: &[u8], max_depth: usize) -> bool {
    let mut scanner = Scanner::new(bytes, true);
    scanner.value(1, max_depth).is_some() && scanner.at_end()
}

/// The nesting depth of a parsed value: 0 for a scalar, 1 for an array or
/// object of scalars, and so on; exact up to `limit`, and some number above
/// `limit` for a deeper value (it stops looking there).
pub(crate) fn depth(value: &serde_json::Value, limit: usize) -> usize {
    use serde_json::Value;
    match value {
        Value::Array(_) | Value::Object(_) if limit == 0 => 1,
        Value::Array(items) => 1 + items.iter().map(|v| depth(v, limit - 1)).max().unwrap_or(0),
        Value::Object(members) => {
            1 + members
                .values()
                .map(|v| depth(v, limit - 1))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Whether `byte` stands for itself inside a string: ASCII but `"`, `\`
/// and the control characters below U+0020. Bytes from 0x80 up are allowed
/// as UTF-8 sequences, checked one by one.
fn is_plain(byte: u8) -> bool {
    (0x20..0x80).contains(&byte) && byte != b'"' && byte != b'\\'
}

/// The bytes of `word` (little-endian) that are not plain ASCII, each
/// marked by its high bit: a `"`, a `\`, a byte below 0x20, or a byte from
/// 0x80 up (the start or rest of a UTF-8 sequence). The lowest marked byte
/// is exactly the first such byte (a borrow only carries upward from a
/// marked byte, so only bytes above it can be marked wrongly).
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_byte(word ^ (ONES * u64::from(b'"')))
        | zero_byte(word ^ (ONES * u64::from(b'\\')))
        | below_space
        | (word & HIGHS)
}

/// The length of the UTF-8 sequence `bytes` begins with, if it is one.
fn utf8_sequence(bytes: &[u8]) -> Option<usize> {
    let width = match bytes.first()? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    std::str::from_utf8(bytes.get(..width)?).ok()?;
    Some(width)
}

impl<'b> Scanner<'b> {
    /// A scanner at the start of `bytes`.
    pub(crate) fn new(bytes: &'b [u8], whitespace: bool) -> Scanner<'b> {
        Scanner {
            bytes,
            pos: 0,
            whitespace,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The bytes not yet consumed.
    pub(crate) fn rest(&self) -> &'b [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn skip_whitespace(&mut self) {
        if self.whitespace {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }
    }

    /// Consumes `literal` if the bytes continue with it.
    #[inline]
    pub(crate) fn eat(&mut self, literal: &[u8]) -> bool {
        // Compared in line: the literals are short and known where this is
        // inlined, and a call to `memcmp` per literal costs more.
        let found = self
            .rest()
            .get(..literal.len())
            .is_some_and(|head| head.iter().zip(literal).all(|(a, b)| a == b));
        if found {
            self.pos += literal.len();
        }
        found
    }

    /// Consumes `literal`, or fails.
    #[inline]
    pub(crate) fn expect(&mut self, literal: &[u8]) -> Option<()> {
        self.eat(literal).then_some(())
    }

    /// Whether everything has been consumed (trailing whitespace aside, when
    /// whitespace is allowed).
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.bytes.len()
    }

    /// Consumes the next `count` bytes if `accept` takes each of them.
    pub(crate) fn take_if(&mut self, count: usize, accept: impl Fn(u8) -> bool) -> Option<()> {
        let taken = self.rest().get(..count)?;
        taken.iter().all(|b| accept(*b)).then_some(())?;
        self.pos += count;
        Some(())
    }

    /// Consumes ASCII digits; returns how many.
    pub(crate) fn digits(&mut self) -> usize {
        let count = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.pos += count;
        count
    }

    /// Consumes a canonical decimal (no sign, no leading zero but in `0`)
    /// that fits in a `u64`.
    pub(crate) fn canonical_u64(&mut self) -> Option<u64> {
        let start = self.pos;
        let count = self.digits();
        let digits = self.bytes.get(start..self.pos)?;
        let canonical = match digits {
            [] => false,
            [b'0'] => true,
            [first, ..] => *first != b'0',
        };
        if !canonical || count > 20 {
            return None;
        }
        // Up to 19 digits cannot overflow; the 20th can.
        let (head, last) = match digits.split_at_checked(19) {
            Some((head, last)) => (head, last),
            None => (digits, &[][..]),
        };
        let value = head.iter().fold(0_u64, |value, digit| {
            value.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'))
        });
        match last {
            [] => Some(value),
            [digit] => value.checked_mul(10)?.checked_add(u64::from(digit - b'0')),
            _ => None,
        }
    }

    /// Consumes a canonical decimal integer from -2^63 to 2^63 - 1 (`-0`
    /// is not canonical).
    pub(crate) fn canonical_i64(&mut self) -> Option<i64> {
        let negative = self.eat(b"-");
        let magnitude = i128::from(self.canonical_u64()?);
        match negative {
            true if magnitude == 0 => None,
            true => i64::try_from(-magnitude).ok(),
            false => i64::try_from(magnitude).ok(),
        }
    }

    /// Consumes one value. Its arrays and objects are at `level`; deeper
    /// than `max_depth` fails.
    pub(crate) fn value(&mut self, level: usize, max_depth: usize) -> Option<()> {
        self.skip_whitespace();
        match self.peek()? {
            b'{' => self.object(level, max_depth),
            b'[' => self.array(level, max_depth),
            b'"' => self.string(),
            b't' => self.expect(b"true"),
            b'f' => self.expect(b"false"),
            b'n' => self.expect(b"null"),
            _ => self.number(),
        }
    }

    /// Consumes an array at `level`.
    pub(crate) fn array(&mut self, level: usize, max_depth: usize) -> Option<()> {
        if level > max_depth {
            return None;
        }
        self.skip_whitespace();
        self.expect(b"[")?;
        self.skip_whitespace();
        if self.eat(b"]") {
            return Some(());
        }
        loop {
            self.value(level + 1, max_depth)?;
            self.skip_whitespace();
            if self.eat(b"]") {
                return Some(());
            }
            self.expect(b",")?;
        }
    }

    fn object(&mut self, level: usize, max_depth: usize) -> Option<()> {
        if level > max_depth {
            return None;
        }
        self.expect(b"{")?;
        self.skip_whitespace();
        if self.eat(b"}") {
            return Some(());
        }
        let mut names = Names::new();
        loop {
            self.skip_whitespace();
            names.insert(self.string_raw()?)?;
            self.skip_whitespace();
            self.expect(b":")?;
            self.value(level + 1, max_depth)?;
            self.skip_whitespace();
            if self.eat(b"}") {
                return Some(());
            }
            self.expect(b",")?;
        }
    }

    /// Consumes a string.
    pub(crate) fn string(&mut self) -> Option<()> {
        self.string_raw().map(|_| ())
    }

    /// Consumes a string; returns what is between its quotes, as written
    /// (escapes not decoded).
    pub(crate) fn string_raw(&mut self) -> Option<&'b [u8]> {
        let bytes = self.bytes;
        self.expect(b"\"")?;
        let start = self.pos;
        let mut pos = start;
        loop {
            // The first byte that is not plain: eight bytes at a time, then
            // one by one in the last few.
            let byte = loop {
                match bytes.get(pos..).and_then(<[u8]>::first_chunk::<8>) {
                    Some(word) => {
                        let special = special_bytes(u64::from_le_bytes(*word));
                        if special != 0 {
                            pos += (special.trailing_zeros() / 8) as usize;
                            break *bytes.get(pos)?;
                        }
                        pos += 8;
                    }
                    None => {
                        let byte = *bytes.get(pos)?;
                        if !is_plain(byte) {
                            break byte;
                        }
                        pos += 1;
                    }
                }
            };
            match byte {
                b'"' => {
                    self.pos = pos + 1;
                    return bytes.get(start..pos);
                }
                b'\\' => {
                    self.pos = pos + 1;
                    self.escape()?;
                    pos = self.pos;
                }
                0x80.. => pos += utf8_sequence(bytes.get(pos..)?)?,
                _ => return None, // a control character
            }
        }
    }

    /// Consumes an escape after its `\`.
    fn escape(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.pos += 1;
                Some(())
            }
            b'u' => {
                self.pos += 1;
                match self.hex4()? {
                    0xD800..=0xDBFF => {
                        self.expect(b"\\u")?;
                        (0xDC00..=0xDFFF).contains(&self.hex4()?).then_some(())
                    }
                    0xDC00..=0xDFFF => None,
                    _ => Some(()),
                }
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.rest().get(..4)?;
        let mut unit = 0;
        for digit in digits {
            unit = unit << 4 | char::from(*digit).to_digit(16)?;
        }
        self.pos += 4;
        Some(unit)
    }

    /// Consumes a number; fails if, read as a 64-bit float, it is not
    /// finite.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        self.eat(b"-");
        let integer = match self.peek()? {
            b'0' => {
                self.pos += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        // Without an exponent, fewer than 309 integer digits are below
        // 10^308: finite.
        let mut surely_finite = integer <= 308;
        if self.eat(b".") && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            surely_finite = false;
        }
        if !surely_finite {
            let text = std::str::from_utf8(self.bytes.get(start..self.pos)?).ok()?;
            if !text.parse::<f64>().ok()?.is_finite() {
                return None;
            }
        }
        Some(())
    }
}

/// How many member names of one object are kept on the stack.
const INLINE_NAMES: usize = 16;

/// The member names of one object seen so far, to refuse a name given
/// twice. Names without escapes are compared as written (the same bytes
/// are the same name); a name with an escape is unescaped first.
struct Names<'b> {
    inline: [&'b [u8]; INLINE_NAMES],
    len: usize,
    /// Every name, once the object outgrows `inline` or a name has an
    /// escape.
    spilled: Option<HashSet<Cow<'b, [u8]>>>,
}

impl<'b> Names<'b> {
    fn new() -> Self {
        Names {
            inline: [&[]; INLINE_NAMES],
            len: 0,
            spilled: None,
        }
    }

    /// Adds a name as written between its quotes (already checked to be a
    /// valid string); `None` if the object already has it.
    fn insert(&mut self, raw: &'b [u8]) -> Option<()> {
        let escaped = raw.contains(&b'\\');
        if self.spilled.is_none() && !escaped {
            let seen = self.inline.get(..self.len)?;
            if seen.contains(&raw) {
                return None;
            }
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = raw;
                self.len += 1;
                return Some(());
            }
        }
        let inline = self.inline.get(..self.len)?;
        let spilled = self
            .spilled
            .get_or_insert_with(|| inline.iter().map(|name| Cow::Borrowed(*name)).collect());
        let name = if escaped {
            let quoted = [&b"\""[..], raw, &b"\""[..]].concat();
            Cow::Owned(serde_json::from_slice::<String>(&quoted).ok()?.into_bytes())
        } else {
            Cow::Borrowed(raw)
        };
        spilled.insert(name).then_some(())
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn accepts_json() {
        for text in [
            "0",
            "-0",
            "1.5e-7",
            "1E+2",
            "18446744073709551616",
            "1e308",
            "1.7976931348623157e308",
            "1e-400",
            "\"\"",
            "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\ude00\"",
            "\"é😀\"",
            " { \"a\" : [ 1 , true , false , null , { } , [ ] ] } ",
            "[[[]]]",
            "{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}]}",
            "{\"a\":1,\"\\u0062\":2,\"A\":3}",
        ] {
            assert!(is_json(text.as_bytes(), 3), "{text}");
        }
        // Past the names kept on the stack: a repeat is still found, also
        // of a name seen before the object outgrew them.
        let members = |n: usize| (0..n).map(|i| format!("\"k{i}\":{i}")).collect::<Vec<_>>();
        let many = members(40);
        assert!(is_json(format!("{{{}}}", many.join(",")).as_bytes(), 1));
        for repeat in [3, 30] {
            let mut with_repeat = many.clone();
            with_repeat.push(format!("\"k{repeat}\":0"));
            let text = format!("{{{}}}", with_repeat.join(","));
            assert!(!is_json(text.as_bytes(), 1), "k{repeat} twice");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for text in [
            "",
            "01",
            "1.",
            ".5",
            "1e",
            "+1",
            "-",
            "1e400",
            "-1e400",
            &"9".repeat(309),
            "NaN",
            "tru",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\tb\"",
            "\"open",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1] [2]",
            "[[[[]]]]",
            "{\"a\":1,\"a\":1}",
            "{\"a\":1,\"b\":{\"c\":1,\"c\":2}}",
            "{\"a\":1,\"\\u0061\":2}",
            "{\"\\u00e9\":1,\"é\":2}",
        ] {
            assert!(!is_json(text.as_bytes(), 3), "{text}");
        }
        assert!(!is_json(b"\"\xff\"", 3));
        assert!(is_json("9".repeat(308).as_bytes(), 1));
    }

    #[test]
    fn without_whitespace() {
        let mut scanner = Scanner::new(b"[1, 2]", false);
        assert!(scanner.value(1, 64).is_none());
        let mut scanner = Scanner::new(b"[1,2]", false);
        assert!(scanner.value(1, 64).is_some() && scanner.at_end());
    }

    #[test]
    fn canonical_decimals() {
        let read = |text: &str| Scanner::new(text.as_bytes(), false).canonical_i64();
        assert_eq!(read("0"), Some(0));
        assert_eq!(read("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(read("9223372036854775807"), Some(i64::MAX));
        assert_eq!(read("9223372036854775808"), None);
        assert_eq!(read("-0"), None);
        assert_eq!(read("01"), None);
        assert_eq!(read("+1"), None);
        let mut scanner = Scanner::new(b"18446744073709551615,", false);
        assert_eq!(scanner.canonical_u64(), Some(u64::MAX));
        assert!(scanner.eat(b","));
        assert_eq!(
            Scanner::new(b"18446744073709551616", false).canonical_u64(),
            None
        );
    }

    #[test]
    fn depth_of_values() {
        let value: serde_json::Value = serde_json::from_str("[1,{\"a\":[[]]},2]").unwrap();
        assert_eq!(depth(&value, 10), 4);
        assert!(depth(&value, 2) > 2);
        assert_eq!(depth(&serde_json::json!(1), 10), 0);
    }
}
