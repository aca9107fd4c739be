//! The transport of `artifacts::fetch`: one `ureq` agent with a timeout on connecting and on
//! every read, so a dead or stalled server ends in an error, never a hang; transient failures
//! (refused, reset, timed out, truncated, 5xx, 408, 429) retried with a doubling backoff that
//! Ctrl-C cuts short, a 404 or 403 not. A proxy is taken from `HTTPS_PROXY` / `HTTP_PROXY`.
//!
//! This module only moves bytes and sorts failures: it never writes a file and never decides
//! whether bytes are trusted; the cache ([`super`]) does both, with the sha256 it was given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a backoff sleep looks at the Ctrl-C flag.
const SLEEP_STEP: Duration = Duration::from_millis(50);

/// How long to wait and how often to try. Only tests pass other values than the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Resolving the host and connecting (TLS included).
    pub connect: Duration,
    /// Each read: the headers, and then every chunk of the body. A big file may take long
    /// overall, but a server that stops sending fails after this.
    pub read: Duration,
    /// Attempts for transient failures.
    pub tries: u32,
    /// The wait after the first failed attempt; it doubles after each further one.
    pub backoff: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            read: Duration::from_secs(60),
            tries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Why bytes did not arrive.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot fetch {url}: the server answered {status}\nhelp: {help}")]
    Status {
        url: String,
        status: String,
        help: &'static str,
    },
    #[error(
        "cannot fetch {url} after {attempts} attempts: {cause}\nhelp: check that this machine reaches the server (a proxy is taken from HTTPS_PROXY or HTTP_PROXY), then run the command again"
    )]
    GaveUp {
        url: String,
        attempts: u32,
        cause: String,
    },
    #[error(
        "cannot fetch {url}: {cause}\nhelp: check the URL (for https, also that the server's certificate is valid), then run the command again"
    )]
    Request { url: String, cause: String },
    /// Also a local copy or a cache read that Ctrl-C stopped.
    #[error(
        "fetching {url} was interrupted by Ctrl-C; nothing was kept\nhelp: run the command again to fetch it"
    )]
    Interrupted { url: String },
}

/// Why one attempt failed: worth another try, or not.
pub(super) enum Attempt<E> {
    Transient(String),
    Fatal(E),
}

impl<E> From<E> for Attempt<E> {
    fn from(e: E) -> Self {
        Attempt::Fatal(e)
    }
}

/// The agent and the rules it is used with.
pub(super) struct Client<'a> {
    agent: ureq::Agent,
    timeouts: Timeouts,
    interrupted: &'a AtomicBool,
}

impl<'a> Client<'a> {
    pub(super) fn new(timeouts: Timeouts, interrupted: &'a AtomicBool) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_resolve(Some(timeouts.connect))
            .timeout_connect(Some(timeouts.connect))
            .timeout_send_request(Some(timeouts.read))
            .timeout_recv_response(Some(timeouts.read))
            .timeout_per_read(Some(timeouts.read))
            .timeout_per_write(Some(timeouts.read))
            // Statuses are read here, so a 404 is reported as a 404 and a 503 can be retried.
            .http_status_as_error(false)
            .user_agent(format!("cai/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: config.into(),
            timeouts,
            interrupted,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or has been tried `tries` times, with a
    /// doubling wait in between that Ctrl-C cuts short.
    pub(super) fn with_retries<T, E: From<TransferError>>(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> Result<T, Attempt<E>>,
    ) -> Result<T, E> {
        let tries = self.timeouts.tries.max(1);
        let mut wait = self.timeouts.backoff;
        let mut cause = String::new();
        for n in 1..=tries {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(TransferError::Interrupted { url: url.into() }.into());
            }
            match attempt() {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(why)) => cause = why,
            }
            if n < tries {
                self.sleep(wait, url)?;
                wait = wait.saturating_mul(2);
            }
        }
        Err(TransferError::GaveUp {
            url: url.into(),
            attempts: tries,
            cause,
        }
        .into())
    }

    fn sleep(&self, total: Duration, url: &str) -> Result<(), TransferError> {
        let deadline = Instant::now() + total;
        loop {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(TransferError::Interrupted { url: url.into() });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(SLEEP_STEP));
        }
    }

    /// A response with a success status; other statuses are errors, 5xx and 408/429 transient.
    pub(super) fn get<E: From<TransferError>>(
        &self,
        url: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, Attempt<E>> {
        let response = self.agent.get(url).call().map_err(|e| classify(url, e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let shown = match status.canonical_reason() {
            Some(reason) => format!("{} {reason}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        let transient = status.is_server_error()
            || status == ureq::http::StatusCode::REQUEST_TIMEOUT
            || status == ureq::http::StatusCode::TOO_MANY_REQUESTS;
        if transient {
            return Err(Attempt::Transient(format!("the server answered {shown}")));
        }
        let help = match status.as_u16() {
            404 | 410 => {
                "check the version and architecture in the URL: the release does not publish this file"
            }
            401 | 403 => {
                "the server refuses access; check the URL and any proxy in between, then run the command again"
            }
            _ => "check the URL, then run the command again",
        };
        Err(Attempt::Fatal(
            TransferError::Status {
                url: url.to_string(),
                status: shown,
                help,
            }
            .into(),
        ))
    }

    /// A small body (a checksum file) into memory, at most `limit` bytes, with retries.
    pub(super) fn read_small(&self, url: &str, limit: u64) -> Result<Vec<u8>, TransferError> {
        self.with_retries(url, || {
            let response = self.get(url)?;
            let mut body = response.into_body();
            body.with_config()
                .limit(limit)
                .read_to_vec()
                .map_err(|e| classify(url, e))
        })
    }
}

/// A failed read of a body: ureq wraps its own errors (timeouts) in `io::Error`.
pub(super) fn read_failed<E: From<TransferError>>(url: &str, e: std::io::Error) -> Attempt<E> {
    classify(url, ureq::Error::from(e))
}

/// Sorts a failed request: connection and timeout trouble is worth another try; a bad URL, a
/// TLS failure or a redirect loop is not.
fn classify<E: From<TransferError>>(url: &str, e: ureq::Error) -> Attempt<E> {
    let fatal = |cause: String| {
        Attempt::Fatal(
            TransferError::Request {
                url: url.to_string(),
                cause,
            }
            .into(),
        )
    };
    match e {
        ureq::Error::Io(e) => Attempt::Transient(io_cause(&e)),
        ureq::Error::Timeout(which) => Attempt::Transient(match which {
            ureq::Timeout::Resolve | ureq::Timeout::Connect => {
                "could not connect before the connect timeout".to_string()
            }
            _ => "the server stopped sending (read timeout)".to_string(),
        }),
        ureq::Error::HostNotFound => Attempt::Transient("cannot resolve the host name".into()),
        ureq::Error::ConnectionFailed => Attempt::Transient("cannot connect".into()),
        ureq::Error::BodyStalled => Attempt::Transient("the body stopped arriving".into()),
        ureq::Error::BodyExceedsLimit(limit) => {
            fatal(format!("the answer is longer than {limit} bytes"))
        }
        other => fatal(other.to_string()),
    }
}

fn io_cause(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            "the connection was reset".to_string()
        }
        ErrorKind::UnexpectedEof => "the connection closed before the whole file arrived".into(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timed out".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_into_transient_and_fatal() {
        use std::io::{Error, ErrorKind};
        let url = "https://m/x";
        let transient = |e: ureq::Error| match classify::<TransferError>(url, e) {
            Attempt::Transient(cause) => cause,
            Attempt::Fatal(e) => panic!("fatal: {e}"),
        };
        for (kind, want) in [
            (ErrorKind::ConnectionRefused, "connection refused"),
            (ErrorKind::ConnectionReset, "the connection was reset"),
            (ErrorKind::BrokenPipe, "the connection was reset"),
            (
                ErrorKind::UnexpectedEof,
                "the connection closed before the whole file arrived",
            ),
            (ErrorKind::TimedOut, "timed out"),
        ] {
            assert_eq!(transient(ureq::Error::Io(Error::from(kind))), want);
        }
        assert_eq!(
            transient(ureq::Error::Timeout(ureq::Timeout::Connect)),
            "could not connect before the connect timeout"
        );
        assert_eq!(
            transient(ureq::Error::Timeout(ureq::Timeout::RecvBody)),
            "the server stopped sending (read timeout)"
        );
        assert_eq!(
            transient(ureq::Error::HostNotFound),
            "cannot resolve the host name"
        );
        match classify::<TransferError>(url, ureq::Error::BodyExceedsLimit(10)) {
            Attempt::Fatal(e) => assert_eq!(
                e.to_string().lines().next(),
                Some("cannot fetch https://m/x: the answer is longer than 10 bytes")
            ),
            Attempt::Transient(cause) => panic!("transient: {cause}"),
        }
    }

    #[test]
    fn retries_stop_at_the_count_and_at_once_for_a_fatal_error_or_ctrl_c() {
        let interrupted = AtomicBool::new(false);
        let timeouts = Timeouts {
            backoff: Duration::from_millis(1),
            ..Timeouts::default()
        };
        let client = Client::new(timeouts, &interrupted);
        let mut calls = 0;
        let err = client
            .with_retries::<(), TransferError>("u", || {
                calls += 1;
                Err(Attempt::Transient(format!("try {calls}")))
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert!(
            err.to_string()
                .starts_with("cannot fetch u after 3 attempts: try 3")
        );
        calls = 0;
        let err = client
            .with_retries::<(), TransferError>("u", || {
                calls += 1;
                Err(Attempt::Fatal(TransferError::Request {
                    url: "u".into(),
                    cause: "bad".into(),
                }))
            })
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(err, TransferError::Request { .. }));
        interrupted.store(true, Ordering::SeqCst);
        let err = client
            .with_retries::<(), TransferError>("u", || unreachable!("no attempt after Ctrl-C"))
            .unwrap_err();
        assert!(matches!(err, TransferError::Interrupted { .. }));
    }
}
