//! A webhook receiver on loopback for the tests: a small HTTP/1.1 server
//! (keep-alive, `content-length` bodies) whose answers the test sets: accept
//! (200), fail with a status, hang, or close the connection at once. It
//! keeps every request it accepted, with its headers, in arrival order.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200, and the request is kept.
    Accept,
    /// This status, and the request is not kept.
    Fail(u16),
    /// No answer until the mode changes (then the connection is closed).
    Hang,
    /// The connection is closed without an answer.
    Close,
}

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::SystemTime,
}

impl Received {
    /// The value of header `name` (lowercase), if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct State {
    mode: Mutex<Mode>,
    changed: Condvar,
    got: Mutex<Vec<Received>>,
    arrived: Condvar,
    attempts: AtomicUsize,
    stop: AtomicBool,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    state: Arc<State>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.set_mode(Mode::Close);
    }
}

impl Receiver {
    /// Starts one in [`Mode::Accept`].
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| unreachable!("{e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| unreachable!("{e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Accept),
            changed: Condvar::new(),
            got: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            attempts: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let accepting = state.clone();
        std::thread::spawn(move || {
            while !accepting.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let state = accepting.clone();
                        std::thread::spawn(move || serve(stream, &state));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            state,
        }
    }

    /// Answers from now on as `mode` says.
    pub fn set_mode(&self, mode: Mode) {
        *self
            .state
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
        self.state.changed.notify_all();
    }

    /// The requests accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .got
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests that arrived, accepted or not.
    pub fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests were accepted, or `limit` passed;
    /// the requests accepted by then.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        let mut got = self
            .state
            .got
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            got = self
                .state
                .arrived
                .wait_timeout(got, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        got.clone()
    }
}

fn serve(stream: TcpStream, state: &State) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut headers = Vec::new();
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        state.attempts.fetch_add(1, Ordering::SeqCst);
        let mode = *state.mode.lock().unwrap_or_else(PoisonError::into_inner);
        let status = match mode {
            Mode::Accept => 200,
            Mode::Fail(status) => status,
            Mode::Close => return,
            Mode::Hang => {
                let mut mode = state.mode.lock().unwrap_or_else(PoisonError::into_inner);
                while *mode == Mode::Hang {
                    mode = state
                        .changed
                        .wait(mode)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                return;
            }
        };
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
        if status == 200 {
            state
                .got
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Received {
                    headers,
                    body,
                    at: std::time::SystemTime::now(),
                });
            state.arrived.notify_all();
        }
    }
}
