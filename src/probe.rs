//! Health probes of a running daemon: one HTTP/1.1 `GET` to its management port.
//!
//! `flagpole healthcheck` and `flagpole ready` use this so container health checks work in
//! images that ship no `curl` (the runtime image is `FROM scratch`). A blocking `std` socket
//! is enough for one request and keeps the probe free of an async runtime and an HTTP client.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Liveness path of the management port.
pub const HEALTHZ: &str = "/healthz";
/// Readiness path of the management port.
pub const READYZ: &str = "/readyz";

/// The longest status line read before giving up on a malformed answer.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Connecting, sending or receiving failed (refused, reset, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The whole exchange took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered something that is not an HTTP/1.x status line.
    #[error("not an HTTP response: {0:?}")]
    Malformed(String),
}

/// One probe target: a path on a port of the local host.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request path (`/healthz` or `/readyz`).
    pub path: String,
    /// Budget for connecting, sending and reading the status line together.
    pub timeout: Duration,
}

impl Probe {
    /// A probe of `path` on `127.0.0.1:port`.
    pub fn local(port: u16, path: &str, timeout: Duration) -> Probe {
        Probe {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            path: path.to_owned(),
            timeout,
        }
    }

    /// The probed URL, for messages.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// Sends the `GET` and returns the response's status code.
    pub fn status(&self) -> Result<u16, ProbeError> {
        let deadline = Instant::now() + self.timeout;
        let timed_out = |error: std::io::Error| match error.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                ProbeError::Timeout(self.timeout)
            }
            _ => ProbeError::Io(error),
        };
        let remaining = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(ProbeError::Timeout(self.timeout))
        };

        let mut stream = TcpStream::connect_timeout(&self.addr, remaining()?).map_err(timed_out)?;
        stream.set_write_timeout(Some(remaining()?))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: flagpole-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path, self.addr
        );
        stream.write_all(request.as_bytes()).map_err(timed_out)?;

        // Only the status line matters; headers and body are never read.
        let mut received = Vec::with_capacity(128);
        let mut buffer = [0u8; 256];
        loop {
            if let Some(end) = received.windows(2).position(|w| w == b"\r\n") {
                return parse_status_line(&received[..end]);
            }
            if received.len() > MAX_STATUS_LINE {
                return parse_status_line(&received);
            }
            stream.set_read_timeout(Some(remaining()?))?;
            let read = stream.read(&mut buffer).map_err(timed_out)?;
            if read == 0 {
                return parse_status_line(&received);
            }
            received.extend_from_slice(&buffer[..read]);
        }
    }
}

/// The status code of an `HTTP/1.x NNN reason` line.
pub fn parse_status_line(line: &[u8]) -> Result<u16, ProbeError> {
    let malformed = || ProbeError::Malformed(String::from_utf8_lossy(line).into_owned());
    let text = std::str::from_utf8(line).map_err(|_| malformed())?;
    let mut parts = text.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(malformed());
    }
    code.parse().map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK").unwrap(), 200);
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable").unwrap(),
            503
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204").unwrap(), 204);
    }

    #[test]
    fn non_http_answers_are_malformed() {
        for line in [
            &b""[..],
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 2000 OK",
            b"HTTP/2 200",
        ] {
            assert!(
                matches!(parse_status_line(line), Err(ProbeError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn url_names_host_port_and_path() {
        let probe = Probe::local(8014, HEALTHZ, Duration::from_secs(2));
        assert_eq!(probe.url(), "http://127.0.0.1:8014/healthz");
    }
}
