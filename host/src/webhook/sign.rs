//! The event signature: Ed25519 with the log's own key over
//! `chaperone-event/v1\n<timestamp>\n<body>`, carried in headers.
//!
//! The log's key, not a secret per endpoint: a receiver checks events with
//! the public key it already holds to verify the audit log (`GET
//! /v1/pubkey`, the store's `.pub` file); there is no shared secret to
//! store, rotate or leak; one receiver cannot forge events for another; and
//! a signed event is evidence that this log sent it. The prefix keeps these
//! signatures apart from the log's checkpoint notes, signed by the same key:
//! no event signature is a valid checkpoint signature, nor the reverse.
//! `docs/webhooks.md` is the receiver's side of this.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaperone_log::keys::{Signer, Verifier};
use ed25519_dalek::Signature;

/// What every signed message starts with (the domain separation).
pub const SIGNATURE_CONTEXT: &[u8] = b"chaperone-event/v1\n";

/// The header naming the event: `<account>:<seq>`, the idempotency key.
pub const HEADER_EVENT_ID: &str = "chaperone-event-id";
/// The header with the signing time, in seconds since the Unix epoch.
pub const HEADER_TIMESTAMP: &str = "chaperone-timestamp";
/// The header with the signature: `v1=<base64 of 64 bytes>`.
pub const HEADER_SIGNATURE: &str = "chaperone-signature";
/// The header naming the key: `<key name>+<hex of the 4-byte key id>`.
pub const HEADER_KEY: &str = "chaperone-key";

/// The version tag of the signature scheme in [`HEADER_SIGNATURE`].
const SCHEME: &str = "v1";

/// The longest header value [`verify`] reads (a signature is 91 bytes).
const MAX_HEADER_LEN: usize = 1024;

/// The signature headers of one request (besides the event id and the
/// content type, which do not depend on the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// [`HEADER_TIMESTAMP`]: seconds since the Unix epoch, as signed.
    pub timestamp: String,
    /// [`HEADER_SIGNATURE`]: `v1=<base64>`.
    pub signature: String,
    /// [`HEADER_KEY`]: `<key name>+<hex key id>`.
    pub key: String,
}

impl SignedHeaders {
    /// The headers as (name, value) pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (HEADER_TIMESTAMP, self.timestamp.as_str()),
            (HEADER_SIGNATURE, self.signature.as_str()),
            (HEADER_KEY, self.key.as_str()),
        ]
    }
}

/// The message an event's signature is over: [`SIGNATURE_CONTEXT`], the
/// timestamp in decimal, a newline, then the body's bytes.
pub fn signed_message(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(SIGNATURE_CONTEXT.len() + timestamp.len() + 1 + body.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message
}

/// How [`HEADER_KEY`] names a key: `<name>+<hex of its id>`, the first two
/// fields of the key's encoding (`GET /v1/pubkey`).
pub fn key_label(verifier: &Verifier) -> String {
    format!("{}+{}", verifier.name(), hex::encode(verifier.id()))
}

/// Signs `body` as sent at `timestamp` (seconds since the Unix epoch).
pub fn sign(signer: &Signer, timestamp: i64, body: &[u8]) -> SignedHeaders {
    let timestamp = timestamp.to_string();
    let signature = signer.sign(&signed_message(&timestamp, body));
    SignedHeaders {
        signature: format!("{SCHEME}={}", BASE64.encode(signature.to_bytes())),
        key: key_label(&signer.verifier()),
        timestamp,
    }
}

/// The signature headers of a received request, as text (`None`: absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceivedHeaders<'a> {
    /// [`HEADER_TIMESTAMP`].
    pub timestamp: Option<&'a str>,
    /// [`HEADER_SIGNATURE`].
    pub signature: Option<&'a str>,
    /// [`HEADER_KEY`].
    pub key: Option<&'a str>,
}

impl<'a> ReceivedHeaders<'a> {
    /// The headers `lookup` gives for each name (any header type: the
    /// names are lowercase).
    pub fn from_fn(lookup: impl Fn(&str) -> Option<&'a str>) -> ReceivedHeaders<'a> {
        ReceivedHeaders {
            timestamp: lookup(HEADER_TIMESTAMP),
            signature: lookup(HEADER_SIGNATURE),
            key: lookup(HEADER_KEY),
        }
    }

    /// The headers of an `http` header map (axum's, hyper's, reqwest's);
    /// a value that is not visible ASCII counts as absent.
    pub fn from_header_map(headers: &'a axum::http::HeaderMap) -> ReceivedHeaders<'a> {
        Self::from_fn(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    }
}

/// Why a received event does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A signature header is missing.
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    /// A header is there but not in its form.
    #[error("the `{header}` header is malformed: {detail}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The signature is not base64.
    #[error("the `v1` signature is not base64")]
    BadBase64,
    /// The event was signed by another key than the one verified with.
    #[error("the event names key `{got}`, not `{expected}`")]
    WrongKey {
        /// The key verified with.
        expected: String,
        /// The key the event names (cut to 128 characters).
        got: String,
    },
    /// The signature does not verify: the body, the timestamp or the
    /// signature was changed, or another key signed it under this key's name.
    #[error("the signature does not verify")]
    BadSignature,
    /// The timestamp is further from now than the tolerance allows: an old
    /// request replayed, or a clock far off.
    #[error(
        "the timestamp {timestamp} is {} s from now ({now}); at most {} s is accepted",
        timestamp.abs_diff(*now),
        tolerance.as_secs()
    )]
    Stale {
        /// The event's timestamp (seconds since the Unix epoch).
        timestamp: i64,
        /// The receiver's now.
        now: i64,
        /// The tolerance.
        tolerance: Duration,
    },
}

/// Checks a received event: its key header names `verifier`'s key, its
/// timestamp is within `tolerance` of `now` (seconds since the Unix epoch,
/// either way), and a `v1` signature in its signature header is `verifier`'s
/// over [`signed_message`] of the timestamp and `body`, the request body's
/// exact bytes. The signature header may hold several space- or
/// comma-separated `<scheme>=<value>` entries (today it holds one): one
/// valid `v1` entry is enough, other schemes are ignored.
pub fn verify(
    verifier: &Verifier,
    headers: &ReceivedHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let timestamp_text = present(headers.timestamp, HEADER_TIMESTAMP)?;
    let signature_text = present(headers.signature, HEADER_SIGNATURE)?;
    let key = present(headers.key, HEADER_KEY)?;
    let expected = key_label(verifier);
    if key.trim() != expected {
        return Err(VerifyError::WrongKey {
            expected,
            got: key.trim().chars().take(128).collect(),
        });
    }
    // Only the canonical decimal form: the signed text is the header's.
    let canonical = !timestamp_text.is_empty()
        && timestamp_text.bytes().all(|b| b.is_ascii_digit())
        && (timestamp_text == "0" || !timestamp_text.starts_with('0'));
    let timestamp = canonical
        .then(|| timestamp_text.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| VerifyError::Malformed {
            header: HEADER_TIMESTAMP,
            detail: "not a whole number of seconds since the Unix epoch".into(),
        })?;
    if timestamp.abs_diff(now) > tolerance.as_secs() {
        return Err(VerifyError::Stale {
            timestamp,
            now,
            tolerance,
        });
    }
    let mut signatures = signature_text
        .split([' ', ','])
        .filter_map(|entry| entry.strip_prefix("v1="))
        .peekable();
    if signatures.peek().is_none() {
        return Err(VerifyError::Malformed {
            header: HEADER_SIGNATURE,
            detail: format!("no `{SCHEME}=` signature"),
        });
    }
    let message = signed_message(timestamp_text, body);
    let mut error = VerifyError::BadSignature;
    for encoded in signatures {
        let bytes = match BASE64.decode(encoded) {
            Ok(bytes) => bytes,
            Err(_) => {
                error = VerifyError::BadBase64;
                continue;
            }
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
            error = VerifyError::Malformed {
                header: HEADER_SIGNATURE,
                detail: format!("a `{SCHEME}` signature is 64 bytes, not {}", bytes.len()),
            };
            continue;
        };
        if verifier.verify(&message, &Signature::from_bytes(&bytes)) {
            return Ok(());
        }
        error = VerifyError::BadSignature;
    }
    Err(error)
}

/// The header's value, if it is there and not too long.
fn present<'a>(value: Option<&'a str>, header: &'static str) -> Result<&'a str, VerifyError> {
    let value = value.ok_or(VerifyError::MissingHeader(header))?;
    if value.len() > MAX_HEADER_LEN {
        return Err(VerifyError::Malformed {
            header,
            detail: format!("longer than {MAX_HEADER_LEN} bytes"),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_258_000;
    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn signer(name: &str, seed: u8) -> Signer {
        Signer::from_seed(name, [seed; 32]).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn received(headers: &SignedHeaders) -> ReceivedHeaders<'_> {
        ReceivedHeaders {
            timestamp: Some(&headers.timestamp),
            signature: Some(&headers.signature),
            key: Some(&headers.key),
        }
    }

    #[test]
    fn signs_and_verifies() {
        let signer = signer("example.com/log", 7);
        let body = br#"{"id":"acme:1"}"#;
        let headers = sign(&signer, NOW, body);
        assert_eq!(headers.timestamp, NOW.to_string());
        assert!(headers.signature.starts_with("v1="));
        assert_eq!(headers.signature.len(), 3 + 88);
        let id = hex::encode(signer.verifier().id());
        assert_eq!(headers.key, format!("example.com/log+{id}"));
        // The key header is the start of the public key's encoding.
        assert!(
            signer
                .verifier()
                .encode()
                .starts_with(&format!("{}+", headers.key))
        );
        let verifier = signer.verifier();
        assert_eq!(
            verify(&verifier, &received(&headers), body, NOW, FIVE_MIN),
            Ok(())
        );
        // The signature is over the domain-separated message, nothing else.
        let raw = BASE64
            .decode(headers.signature.trim_start_matches("v1="))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let raw = <[u8; 64]>::try_from(raw.as_slice()).unwrap_or_else(|e| unreachable!("{e}"));
        let signature = Signature::from_bytes(&raw);
        let mut expected = b"chaperone-event/v1\n".to_vec();
        expected.extend_from_slice(format!("{NOW}\n").as_bytes());
        expected.extend_from_slice(body);
        assert!(verifier.verify(&expected, &signature));
        assert!(!verifier.verify(body, &signature));
    }

    #[test]
    fn names_what_is_wrong() {
        let signer = signer("log", 1);
        let verifier = signer.verifier();
        let body = b"{}";
        let good = sign(&signer, NOW, body);
        let check = |headers: ReceivedHeaders<'_>, body: &[u8], now: i64| {
            verify(&verifier, &headers, body, now, FIVE_MIN)
        };

        for (missing, header) in [
            (0, HEADER_TIMESTAMP),
            (1, HEADER_SIGNATURE),
            (2, HEADER_KEY),
        ] {
            let mut headers = received(&good);
            match missing {
                0 => headers.timestamp = None,
                1 => headers.signature = None,
                _ => headers.key = None,
            }
            assert_eq!(
                check(headers, body, NOW),
                Err(VerifyError::MissingHeader(header))
            );
        }

        // A changed body, or a changed timestamp, no longer verifies.
        assert_eq!(
            check(received(&good), b"{ }", NOW),
            Err(VerifyError::BadSignature)
        );
        let later = (NOW + 1).to_string();
        let moved = ReceivedHeaders {
            timestamp: Some(&later),
            ..received(&good)
        };
        assert_eq!(check(moved, body, NOW), Err(VerifyError::BadSignature));

        let bad_base64 = ReceivedHeaders {
            signature: Some("v1=not*base64"),
            ..received(&good)
        };
        assert_eq!(check(bad_base64, body, NOW), Err(VerifyError::BadBase64));
        let short = ReceivedHeaders {
            signature: Some("v1=AAAA"),
            ..received(&good)
        };
        assert!(matches!(
            check(short, body, NOW),
            Err(VerifyError::Malformed {
                header: HEADER_SIGNATURE,
                ..
            })
        ));
        let other_scheme = format!("v2={}", good.signature.trim_start_matches("v1="));
        let no_v1 = ReceivedHeaders {
            signature: Some(&other_scheme),
            ..received(&good)
        };
        assert!(matches!(
            check(no_v1, body, NOW),
            Err(VerifyError::Malformed {
                header: HEADER_SIGNATURE,
                ..
            })
        ));
        // Several entries: one valid v1 is enough.
        let several = format!("v2=xyz, v1=AAAA {}", good.signature);
        let with_several = ReceivedHeaders {
            signature: Some(&several),
            ..received(&good)
        };
        assert_eq!(check(with_several, body, NOW), Ok(()));

        for timestamp in [
            "",
            "-5",
            "+5",
            "1.5",
            "01767258000",
            "abc",
            "99999999999999999999",
        ] {
            let headers = ReceivedHeaders {
                timestamp: Some(timestamp),
                ..received(&good)
            };
            assert!(
                matches!(
                    check(headers, body, NOW),
                    Err(VerifyError::Malformed {
                        header: HEADER_TIMESTAMP,
                        ..
                    })
                ),
                "{timestamp:?}"
            );
        }

        // Too old, or too far ahead; at the tolerance exactly is fine.
        assert_eq!(check(received(&good), body, NOW + 300), Ok(()));
        assert_eq!(check(received(&good), body, NOW - 300), Ok(()));
        for now in [NOW + 301, NOW - 301] {
            let error = check(received(&good), body, now);
            assert_eq!(
                error,
                Err(VerifyError::Stale {
                    timestamp: NOW,
                    now,
                    tolerance: FIVE_MIN
                })
            );
            let text = error.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains("301 s from now"), "{text}");
        }

        let huge = "x".repeat(MAX_HEADER_LEN + 1);
        let long = ReceivedHeaders {
            key: Some(&huge),
            ..received(&good)
        };
        assert!(matches!(
            check(long, body, NOW),
            Err(VerifyError::Malformed {
                header: HEADER_KEY,
                ..
            })
        ));
    }

    #[test]
    fn refuses_other_keys() {
        let ours = signer("log", 1);
        let theirs = signer("log", 2);
        let body = b"{}";
        // Signed by another key that names itself: refused by name.
        let headers = sign(&theirs, NOW, body);
        assert!(matches!(
            verify(&ours.verifier(), &received(&headers), body, NOW, FIVE_MIN),
            Err(VerifyError::WrongKey { .. })
        ));
        // Signed by another key, claiming to be ours: refused by signature.
        let forged = SignedHeaders {
            key: key_label(&ours.verifier()),
            ..headers
        };
        assert_eq!(
            verify(&ours.verifier(), &received(&forged), body, NOW, FIVE_MIN),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn reads_header_maps() {
        let signer = signer("log", 3);
        let body = b"[1]";
        let signed = sign(&signer, NOW, body);
        let mut map = axum::http::HeaderMap::new();
        for (name, value) in signed.pairs() {
            map.insert(name, value.parse().unwrap_or_else(|e| unreachable!("{e}")));
        }
        let headers = ReceivedHeaders::from_header_map(&map);
        assert_eq!(headers, received(&signed));
        assert_eq!(
            verify(&signer.verifier(), &headers, body, NOW, FIVE_MIN),
            Ok(())
        );
    }
}
