//! The control socket: a Unix stream socket (mode 0600) speaking one JSON request line in,
//! one JSON reply line out, then close.
//!
//! Why this shape: a Unix socket is guarded by file permissions (only the service user and root
//! can reach it; no port to firewall, nothing on the network), one line of JSON per exchange is
//! easy to drive from `switchyard ctl`, from `socat`, or from any language's tooling, and a
//! connection per command keeps the server trivially robust. The socket thread only moves
//! bytes: requests go to the control loop over a channel and it answers there, so every change
//! is made by one thread, in order.
use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{bail, Context as _};
use tracing::{debug, warn};

use super::{Reply, Request};

/// Longest request line accepted (a `ctl add` spec is well under this).
const MAX_REQUEST: u64 = 16 * 1024;

/// A request and where its reply goes.
pub struct Pending {
    /// The request.
    pub request: Request,
    /// The reply channel (the socket thread waits on it).
    pub reply: mpsc::Sender<Reply>,
}

/// The listening socket and its thread.
pub struct CtlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl CtlSocket {
    /// Binds `path` (creating its directory; replacing a stale socket left by a crash, but
    /// refusing to take over one that another instance still answers on) and serves it,
    /// sending each request to `to_control`.
    pub fn start(path: &Path, to_control: mpsc::Sender<Pending>) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("creating the control socket's directory {}", dir.display())
            })?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!(
                    "control socket {} is in use by a running switchyard (stop it, or give this one --ctl-socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale control socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the control socket {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("ctl-socket".into())
            .spawn(move || serve(&listener, &to_control, &stop2))?;
        Ok(Self {
            path: path.to_owned(),
            stop,
            handle: Some(handle),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for CtlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: &UnixListener, to_control: &mpsc::Sender<Pending>, stop: &AtomicBool) {
    while !stop.load(Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = exchange(stream, to_control) {
                    debug!(error = %e, "control connection ended");
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                warn!(error = %e, "control socket accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request line, waits for the control loop's answer, writes it.
fn exchange(stream: UnixStream, to_control: &mpsc::Sender<Pending>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(std::io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(line.trim()) {
        Ok(request) => {
            let (tx, rx) = mpsc::channel();
            if to_control.send(Pending { request, reply: tx }).is_err() {
                Reply::error("switchyard is stopping")
            } else {
                rx.recv_timeout(Duration::from_secs(30))
                    .unwrap_or_else(|_| Reply::error("no answer from the control loop"))
            }
        }
        Err(e) => Reply::error(format!("not a control request: {e}")),
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// Sends `request` to the control socket at `path` and returns the reply (the client side,
/// used by `switchyard ctl`).
pub fn call(path: &Path, request: &Request) -> anyhow::Result<Reply> {
    let stream = UnixStream::connect(path).with_context(|| {
        format!(
            "connecting to the control socket {} (is switchyard running? is --socket right? are you root or the service user?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(35)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .context("reading the control socket's reply")?;
    serde_json::from_str(answer.trim()).with_context(|| format!("unreadable reply {answer:?}"))
}
