//! The tiny HTTP/1.1 server behind `--metrics-listen`: `GET /metrics` and `GET /health`.
//!
//! Why not an HTTP crate: a scrape is one small request every few seconds from one or two
//! Prometheus servers. A blocking [`TcpListener`] on its own thread, answering one connection
//! at a time with `Connection: close`, is all that needs, and keeps an async runtime and its
//! dependency tree out of a kernel-bypass dispatcher. Both `switchyard` and
//! `switchyard-processor` use it, so it lives in its own crate (the processor crate cannot
//! depend on the dispatcher's).
//!
//! What it answers:
//! - `GET /metrics` (or `HEAD`): 200 with the `render` closure's text, as
//!   [`PROMETHEUS_TEXT`] (the Prometheus text exposition format 0.0.4).
//! - `GET /health`: the `health` closure's status code and body (`text/plain`).
//! - any other path: 404; any other method: 405 with `Allow: GET, HEAD`.
//! - a request head over [`MAX_REQUEST`] bytes: 431; a malformed one: 400.
//!
//! A client gets [`IO_TIMEOUT`] per read or write and [`REQUEST_DEADLINE`] in all to send its
//! request head, so a stuck or slow client delays the next scrape by at most that much and
//! never holds the thread.
use std::{
    io::{self, ErrorKind, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::debug;

/// `Content-Type` of the Prometheus text exposition format, version 0.0.4 (what
/// `promtool check metrics` and every Prometheus server accept).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request head read (request line and headers); a larger one is answered 431.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Limit on each read and write of one connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on the whole request head of one connection, however slowly it trickles in.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Produces the `/metrics` body; called once per scrape, on the server thread.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;
/// Produces the `/health` status code and body; called once per request, on the server thread.
pub type Health = Arc<dyn Fn() -> (u16, String) + Send + Sync>;

/// A running server; stops (and joins its thread) on [`MetricsServer::stop`] or drop.
pub struct MetricsServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `/metrics` from `render` on `addr`, with `/health` always answering 200 `ok`.
    pub fn start(addr: SocketAddr, render: Render) -> io::Result<Self> {
        Self::with_health(addr, render, Arc::new(|| (200, "ok\n".to_string())))
    }

    /// Serves `/metrics` from `render` and `/health` from `health` on `addr` (port 0: any).
    pub fn with_health(addr: SocketAddr, render: Render, health: Health) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || serve(&listener, &flag, &render, &health))?;
        Ok(Self {
            local,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting and joins the server thread (after the connection in progress, if any).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own. Should that fail (it should
        // not: the listener is ours and open), leave the thread parked in accept rather than
        // hang the caller; it exits with the process.
        let wake = match self.local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.local.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.local.port())
            }
            _ => self.local,
        };
        if TcpStream::connect_timeout(&wake, IO_TIMEOUT).is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, render: &Render, health: &Health) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                if let Err(e) = handle(stream, render, health) {
                    debug!(error = %e, "metrics connection failed");
                }
            }
            // Out of descriptors and the like: back off instead of spinning.
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// What the request asked for, once its head is read.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Get { path: String, head: bool },
    OtherMethod,
    Malformed,
    TooLarge,
}

fn read_head(stream: &mut TcpStream) -> io::Result<Request> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_end(&buf) {
            return Ok(parse(&buf[..end]));
        }
        if buf.len() >= MAX_REQUEST {
            return Ok(Request::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(ErrorKind::TimedOut, "request head too slow"));
        }
        stream.set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(Request::Malformed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// End of the request head (`\r\n\r\n`, or a bare `\n\n` from a lax client).
fn find_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Malformed;
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Request::Malformed;
    }
    let path = target
        .split(['?', '#'])
        .next()
        .unwrap_or(target)
        .to_string();
    match method {
        "GET" => Request::Get { path, head: false },
        "HEAD" => Request::Get { path, head: true },
        m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Request::OtherMethod,
        _ => Request::Malformed,
    }
}

fn handle(mut stream: TcpStream, render: &Render, health: &Health) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let req = read_head(&mut stream)?;
    let (code, ctype, body, head_only, extra) = match req {
        Request::Get { path, head } => match path.as_str() {
            "/metrics" => (200, PROMETHEUS_TEXT, render(), head, ""),
            "/health" => {
                let (code, body) = health();
                (code, "text/plain; charset=utf-8", body, head, "")
            }
            _ => (
                404,
                "text/plain; charset=utf-8",
                "not found\n".into(),
                head,
                "",
            ),
        },
        Request::OtherMethod => (
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
            false,
            "Allow: GET, HEAD\r\n",
        ),
        Request::Malformed => (
            400,
            "text/plain; charset=utf-8",
            "bad request\n".into(),
            false,
            "",
        ),
        Request::TooLarge => (
            431,
            "text/plain; charset=utf-8",
            "request header fields too large\n".into(),
            false,
            "",
        ),
    };
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        reason(code),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    // Let the client read everything before the close (unread request bytes would otherwise
    // make the kernel send RST and may discard the response).
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Drain what the client still sends (an oversized head's rest), briefly: closing with
    // unread bytes makes the kernel answer RST, which can discard the response in flight.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A minimal client for tests and tools: sends `method path` to `addr` and returns the status
/// code, the response head and the body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    // Long enough to outwait one slow client the server is busy with.
    s.set_read_timeout(Some(REQUEST_DEADLINE + IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "no response head"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "no status code"))?;
    Ok((code, head.to_string(), body.to_string()))
}

/// Pipes `text` through `promtool check metrics` (the Prometheus linter: format, `_total`
/// on counters, base units, HELP on every metric). `Ok` only when it exits 0 and reports
/// nothing; `Err` with what it said, or why it could not run.
///
/// # Panics
/// When `promtool` is not installed: the tests that call this must fail loudly, not skip.
pub fn promtool_check(text: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool is required (Debian package prometheus): install with `cargo xtask setup`"
        ),
        Err(e) => return Err(format!("cannot run promtool: {e}")),
    };
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = text.to_string();
    // Write from another thread: promtool may answer before it has read everything.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> MetricsServer {
        let render: Render =
            Arc::new(|| "# HELP x_total X.\n# TYPE x_total counter\nx_total 7\n".into());
        let health: Health = Arc::new(|| (503, "down: no processor\n".into()));
        MetricsServer::with_health("127.0.0.1:0".parse().unwrap(), render, health).unwrap()
    }

    #[test]
    fn serves_metrics_health_and_errors() {
        let s = server();
        let a = s.local_addr();
        let (code, head, body) = request(a, "GET", "/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(
            head.contains(&format!("Content-Type: {PROMETHEUS_TEXT}")),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("x_total 7"), "{body}");
        let (code, _, body) = request(a, "GET", "/metrics?x=1").unwrap();
        assert_eq!((code, body.contains("x_total 7")), (200, true));
        let (code, _, body) = request(a, "GET", "/health").unwrap();
        assert_eq!((code, body.as_str()), (503, "down: no processor\n"));
        let (code, _, body) = request(a, "HEAD", "/metrics").unwrap();
        assert_eq!((code, body.as_str()), (200, ""));
        assert_eq!(request(a, "GET", "/nope").unwrap().0, 404);
        let (code, head, _) = request(a, "POST", "/metrics").unwrap();
        assert_eq!(code, 405);
        assert!(head.contains("Allow: GET, HEAD"), "{head}");
        s.stop();
    }

    #[test]
    fn default_health_is_ok_and_stop_frees_the_port() {
        let render: Render = Arc::new(String::new);
        let s = MetricsServer::start("127.0.0.1:0".parse().unwrap(), render).unwrap();
        let a = s.local_addr();
        let (code, _, body) = request(a, "GET", "/health").unwrap();
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        drop(s);
        assert!(TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_err());
    }

    #[test]
    fn oversized_and_malformed_requests_are_refused() {
        let s = server();
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        let big = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST)
        );
        c.write_all(big.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        c.write_all(b"garbage\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        // A client that says nothing is dropped after the timeout, and the server still serves.
        let _idle = TcpStream::connect(s.local_addr()).unwrap();
        assert_eq!(request(s.local_addr(), "GET", "/metrics").unwrap().0, 200);
    }

    #[test]
    fn promtool_flags_bad_exposition() {
        assert_eq!(
            promtool_check("# HELP x_total X.\n# TYPE x_total counter\nx_total 7\n"),
            Ok(())
        );
        let bad = promtool_check("# TYPE x counter\nx 7\n").unwrap_err();
        assert!(bad.contains("_total") || bad.contains("help"), "{bad}");
    }

    #[test]
    fn parses_request_lines() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Request::Get {
                path: "/metrics".into(),
                head: false
            }
        );
        assert_eq!(parse(b"DELETE /metrics HTTP/1.1"), Request::OtherMethod);
        assert_eq!(parse(b"GET metrics HTTP/1.1"), Request::Malformed);
        assert_eq!(parse(b"GET /metrics"), Request::Malformed);
        assert_eq!(parse(b"get /metrics HTTP/1.0"), Request::Malformed);
    }
}
