//! One delivery attempt: an HTTP POST of a signed event, and what it came
//! to; and the backoff between attempts.

use std::time::Duration;

use rand_core::RngCore;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::sign::{HEADER_EVENT_ID, SignedHeaders};

/// How long connecting (TCP and TLS) may take, at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a response body is read (then dropped): enough to let the
/// connection be reused after a short answer, no more.
pub const MAX_RESPONSE_READ: usize = 4096;

/// The longest error text kept for an attempt.
const MAX_ERROR_LEN: usize = 200;

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened, in a few words (`HTTP 500`, `timed out after 10 s`,
    /// `connection refused`).
    pub error: String,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Whether trying again cannot help (the URL cannot be sent to).
    pub permanent: bool,
}

impl Failure {
    fn transient(error: String, status: Option<u16>) -> Failure {
        Failure {
            error: truncate(error),
            status,
            permanent: false,
        }
    }
}

/// An error building the HTTP client.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the webhook HTTP client: {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// Sends events: an HTTP client (connections are pooled and reused) with
/// the timeouts of every attempt. Redirects are not followed and no cookies
/// are kept.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    timeout: Duration,
    allow_private: bool,
}

/// Which endpoint addresses a [`Sender`] may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// Public addresses only: a URL whose host is, or resolves only to, a
    /// loopback, private, link-local, shared, multicast or reserved address
    /// is refused, so that a subscriber cannot make the server probe its
    /// own network (checked on every connection, so a name that changes
    /// its answer is checked again).
    PublicOnly,
    /// Any address (a receiver on the same machine or network).
    Any,
}

impl Sender {
    /// A sender whose attempts take at most `timeout` each, from connecting
    /// to the end of the response (connecting: at most [`CONNECT_TIMEOUT`]).
    pub fn new(timeout: Duration, addresses: Addresses) -> Result<Sender, ClientError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("chaperone-webhook/", env!("CARGO_PKG_VERSION")));
        if addresses == Addresses::PublicOnly {
            builder = builder.dns_resolver(std::sync::Arc::new(PublicResolver));
        }
        let client = builder.build().map_err(ClientError)?;
        Ok(Sender {
            client,
            timeout,
            allow_private: addresses == Addresses::Any,
        })
    }

    /// POSTs `body` (an event's JSON) to `url` with the event id and the
    /// signature headers: `Ok` with the status if the endpoint answered
    /// 2xx, else what went wrong.
    pub async fn send(
        &self,
        url: &str,
        event_id: &str,
        signed: &SignedHeaders,
        body: Vec<u8>,
    ) -> Result<u16, Failure> {
        let url = check_url(url)?;
        if !self.allow_private
            && let Some(ip) = literal_ip(&url)
            && !is_public(ip)
        {
            return Err(Failure {
                error: format!(
                    "the endpoint's address {ip} is not public (loopback, private, link-local or reserved): refused"
                ),
                status: None,
                permanent: true,
            });
        }
        let event_id = HeaderValue::from_str(event_id).map_err(|_| Failure {
            error: "the event id cannot be sent in a header".into(),
            status: None,
            permanent: true,
        })?;
        let mut request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(HEADER_EVENT_ID, event_id);
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        let mut response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => return Err(Failure::transient(self.describe(&error), None)),
        };
        let status = response.status();
        // Read a little of the answer, so that a short one leaves the
        // connection reusable; the rest is dropped with the response. The
        // status decides: a 2xx whose body then fails is still delivered.
        let mut read = 0;
        while read < MAX_RESPONSE_READ {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let error = if status.is_redirection() {
            format!("HTTP {} (redirects are not followed)", status.as_u16())
        } else {
            format!("HTTP {}", status.as_u16())
        };
        Err(Failure::transient(error, Some(status.as_u16())))
    }

    /// What went wrong, in a few words, without the URL (it may hold a
    /// secret).
    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() || io_kind(error) == Some(std::io::ErrorKind::TimedOut) {
            if error.is_connect() && self.timeout > CONNECT_TIMEOUT {
                return format!("connecting timed out after {}", seconds(CONNECT_TIMEOUT));
            }
            return format!("timed out after {}", seconds(self.timeout));
        }
        match io_kind(error) {
            Some(std::io::ErrorKind::ConnectionRefused) => return "connection refused".into(),
            Some(std::io::ErrorKind::ConnectionReset) => {
                return "connection reset by the endpoint".into();
            }
            _ => {}
        }
        let cause = innermost(error);
        if is_tls(error) {
            format!("TLS handshake failed: {cause}")
        } else if error.is_connect() {
            format!("cannot connect: {cause}")
        } else {
            format!("request failed: {cause}")
        }
    }
}

/// Resolves names to their public addresses only (see
/// [`Addresses::PublicOnly`]).
struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("`{host}` has no address").into()
                } else {
                    format!(
                        "`{host}` resolves only to addresses that are not public (loopback, private, link-local or reserved): refused"
                    )
                    .into()
                };
                return Err(error);
            }
            let addresses: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addresses)
        })
    }
}

/// The host of `url` if it is an IP address.
fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether `ip` is a public unicast address: not loopback, unspecified,
/// private (RFC 1918, unique local), link-local, shared (RFC 6598),
/// benchmarking, documentation, multicast, broadcast or reserved; an
/// IPv4-mapped IPv6 address is judged as its IPv4 address.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || (a == 192 && b == 0 && c == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let [first, second, third, ..] = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && second == 0x0db8)
                || (first == 0x0064 && second == 0xff9b && third == 0))
        }
    }
}

/// `url` if it is an absolute `http` or `https` URL with a host.
fn check_url(url: &str) -> Result<reqwest::Url, Failure> {
    let permanent = |error: String| Failure {
        error: truncate(error),
        status: None,
        permanent: true,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| permanent(format!("invalid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(permanent(format!(
            "URL scheme `{}` is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host().is_none() {
        return Err(permanent("the URL has no host".into()));
    }
    Ok(parsed)
}

/// The kind of the first I/O error in `error`'s causes.
fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    causes(error).find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
}

/// Whether a TLS error is among `error`'s causes.
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    causes(error).any(|e| e.is::<rustls::Error>())
}

/// The message of the last cause of `error`, the most specific one.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    causes(error)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// `error` and its sources. An I/O error's source is the error it wraps
/// (the standard library's skips it and goes on to that error's source).
fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// `10 s`, or `250 ms` for less than a whole number of seconds.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// How long to wait before trying again after a failure: exponential
/// backoff with full jitter, a uniformly random delay in
/// `[0, min(cap, base * 2^attempts_so_far)]`. `attempts_so_far` is the
/// number of attempts made before the one that failed (the delivery's
/// [`Due::attempts`](chaperone_store::outbox::Due::attempts)): 0 after a
/// first failure, whose delay is at most `base`.
pub fn retry_delay(
    attempts_so_far: u32,
    base: Duration,
    cap: Duration,
    rng: &mut impl RngCore,
) -> Duration {
    let ceiling = 2u32
        .checked_pow(attempts_so_far)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(cap, |delay| delay.min(cap));
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    // A uniform draw in [0, nanos]: the high half of a 64x64-bit product.
    let span = u128::from(nanos) + 1;
    let draw = (u128::from(rng.next_u64()) * span) >> 64;
    Duration::from_nanos(u64::try_from(draw).unwrap_or(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RNG that always draws the same number.
    struct Fixed(u64);

    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            u32::try_from(self.0 >> 32).unwrap_or(u32::MAX)
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            rand_core::impls::fill_bytes_via_next(self, dest);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(600);
        let max = |n| retry_delay(n, base, cap, &mut Fixed(u64::MAX));
        let ceilings: Vec<u64> = (0..12).map(|n| max(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        // The draw is within [0, ceiling]: 0 at the bottom, half way in the
        // middle.
        assert_eq!(retry_delay(3, base, cap, &mut Fixed(0)), Duration::ZERO);
        assert_eq!(
            retry_delay(3, base, cap, &mut Fixed(1 << 63)),
            Duration::from_secs(4)
        );
        // No overflow however many attempts, or however large the base.
        for n in [31, 32, 33, 64, 1000, u32::MAX] {
            assert_eq!(max(n), cap);
            assert!(retry_delay(n, base, cap, &mut Fixed(12345)) <= cap);
        }
        assert_eq!(
            retry_delay(2, Duration::MAX, Duration::MAX, &mut Fixed(u64::MAX)),
            Duration::from_nanos(u64::MAX)
        );
        // Real randomness stays within the bound too.
        let mut rng = rand_core::OsRng;
        for n in 0..20 {
            let ceiling = base.saturating_mul(1 << n.min(31)).min(cap);
            assert!(retry_delay(n, base, cap, &mut rng) <= ceiling);
        }
    }

    #[test]
    fn refuses_urls_it_cannot_send_to() {
        for (url, expected) in [
            (
                "ftp://example.com/x",
                "URL scheme `ftp` is not http or https",
            ),
            (
                "file:///etc/passwd",
                "URL scheme `file` is not http or https",
            ),
            (
                "example.com/hook",
                "invalid URL: relative URL without a base",
            ),
            ("http://", "invalid URL: empty host"),
        ] {
            let failure = check_url(url).err();
            assert_eq!(
                failure.as_ref().map(|f| (f.error.as_str(), f.permanent)),
                Some((expected, true)),
                "{url}"
            );
        }
        assert!(check_url("https://example.com:8443/hooks?token=x").is_ok());
    }

    #[test]
    fn describes_durations_and_cuts_long_errors() {
        assert_eq!(seconds(Duration::from_secs(10)), "10 s");
        assert_eq!(seconds(Duration::from_millis(250)), "250 ms");
        assert_eq!(seconds(Duration::from_millis(1500)), "1500 ms");
        let long = truncate("é".repeat(150));
        assert!(long.len() <= MAX_ERROR_LEN + '…'.len_utf8());
        assert!(long.ends_with('…'));
        assert_eq!(truncate("short".into()), "short");
    }
}

#[cfg(test)]
mod wire_tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::webhook::sign::sign;

    /// A server on 127.0.0.1 that reads a request's head, writes `answer`
    /// and keeps the connection open until the client closes it; its
    /// `host:port`.
    async fn answering(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| unreachable!("{e}"))
            .port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 64 * 1024];
                    let _ = socket.read(&mut buffer).await;
                    let _ = socket.write_all(&answer).await;
                    while socket.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
                });
            }
        });
        format!("127.0.0.1:{port}")
    }

    async fn send_to(url: &str, event_id: &str) -> Result<u16, Failure> {
        let signer = chaperone_log::keys::Signer::from_seed("log", [1; 32])
            .unwrap_or_else(|e| unreachable!("{e}"));
        let sender = Sender::new(Duration::from_secs(60), Addresses::Any)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let body = b"{}".to_vec();
        sender
            .send(url, event_id, &sign(&signer, 1, &body), body)
            .await
    }

    #[tokio::test]
    async fn redirects_are_failures() {
        let host = answering(
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let failure = send_to(&format!("http://{host}/hook"), "acme:1")
            .await
            .err();
        assert_eq!(
            failure,
            Some(Failure {
                error: "HTTP 302 (redirects are not followed)".into(),
                status: Some(302),
                permanent: false,
            })
        );
    }

    #[tokio::test]
    async fn a_long_answer_is_not_read_to_its_end() {
        // 200 with a body of 64 MiB of which 8 KiB come: reading it whole
        // would wait for the rest until the request's timeout (60 s).
        let host = answering(
            b"HTTP/1.1 200 OK\r\ncontent-length: 67108864\r\n\r\n"
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b'x', 8192))
                .collect(),
        )
        .await;
        let sent = tokio::time::timeout(
            Duration::from_secs(20),
            send_to(&format!("http://{host}/hook"), "acme:1"),
        )
        .await;
        assert_eq!(sent, Ok(Ok(200)));
    }

    #[tokio::test]
    async fn tls_to_a_plain_server_is_a_tls_failure() {
        let host = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let failure = send_to(&format!("https://{host}/hook"), "acme:1")
            .await
            .err();
        let error = failure
            .as_ref()
            .map(|f| f.error.as_str())
            .unwrap_or_default();
        assert!(error.starts_with("TLS handshake failed: "), "{failure:?}");
        assert!(!error.contains("127.0.0.1"), "{error}");
        assert_eq!(
            failure.map(|f| (f.status, f.permanent)),
            Some((None, false))
        );
    }

    #[tokio::test]
    async fn an_event_id_that_cannot_be_a_header_is_permanent() {
        let host = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let failure = send_to(&format!("http://{host}/hook"), "acme\n:1")
            .await
            .err();
        assert_eq!(
            failure.map(|f| (f.error, f.permanent)),
            Some(("the event id cannot be sent in a header".into(), true))
        );
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let ip: std::net::IpAddr = private.parse().unwrap_or_else(|e| unreachable!("{e}"));
            assert!(!is_public(ip), "{private} counted as public");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: std::net::IpAddr = public.parse().unwrap_or_else(|e| unreachable!("{e}"));
            assert!(is_public(ip), "{public} counted as not public");
        }
    }

    /// By default a loopback or private endpoint is refused for good, by
    /// address or by a name that resolves to one, and nothing is sent.
    #[tokio::test]
    async fn a_public_only_sender_refuses_local_endpoints() {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| unreachable!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| unreachable!("{e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let sender = Sender::new(Duration::from_secs(5), Addresses::PublicOnly)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let signed = crate::webhook::sign::sign(&chaperone_log::keys::Signer::generate(), 1, b"{}");
        for url in [
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://[::1]:{port}/hook"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ] {
            let failure = sender
                .send(&url, "acme:1", &signed, b"{}".to_vec())
                .await
                .map(|_| ())
                .err()
                .unwrap_or_else(|| unreachable!("{url} was sent to"));
            assert!(
                failure.permanent && failure.error.contains("not public"),
                "{url}: {failure:?}"
            );
        }
        let failure = sender
            .send(
                &format!("http://localhost:{port}/hook"),
                "acme:1",
                &signed,
                b"{}".to_vec(),
            )
            .await
            .map(|_| ())
            .err()
            .unwrap_or_else(|| unreachable!("localhost was sent to"));
        assert!(failure.error.contains("not public"), "{failure:?}");
        assert!(
            listener.accept().is_err(),
            "a connection reached the listener"
        );
    }
}
