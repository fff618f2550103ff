//! The UAPI socket `/var/run/wireguard/<interface>.sock`, served as wireguard-go and boringtun
//! serve it, so `wg`, `wg-quick` and existing WireGuard tooling drive xgate unchanged.
//!
//! A listener thread accepts connections; each connection gets a thread that reads commands
//! and forwards them to the control plane (at most `MAX_CONNECTIONS` at once, lines of at most
//! `MAX_LINE` bytes, commands of at most `MAX_COMMAND_BYTES`). The listener also watches its own socket file:
//! deleting it stops the daemon, as the cross-platform spec asks.

pub mod protocol;

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::engine::{PlaneHandle, StopReason};

/// Directory of UAPI sockets, where `wg` looks for userspace interfaces.
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Longest line accepted (a key and a value; generous).
const MAX_LINE: usize = 4096;
/// How long a command may take before the connection is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more are closed as they arrive (each has a thread). `wg` and
/// `wg-quick` open one at a time, so this only stops a runaway client from piling up threads.
pub const MAX_CONNECTIONS: usize = 64;
/// Most bytes in one command with its body: a `set` of about 250,000 peers.
pub const MAX_COMMAND_BYTES: usize = 64 << 20;

/// Path of the UAPI socket of interface `name`.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.sock"))
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    /// Another process answers on the socket: the interface is already running.
    #[error("{0} is in use: interface already running (stop it first, or choose another name)")]
    InUse(PathBuf),
    /// Creating the directory or socket failed.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Fails if a live process serves `name`'s socket; removes a stale one left by a crash.
pub fn claim(name: &str) -> Result<(), UapiError> {
    let path = socket_path(name);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(UapiError::InUse(path));
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

/// The running UAPI server.
pub struct UapiServer {
    path: PathBuf,
    inode: u64,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UapiServer {
    /// Binds the socket and starts serving it.
    pub fn start(
        name: &str,
        plane: PlaneHandle,
        stop: Sender<StopReason>,
    ) -> Result<Self, UapiError> {
        let path = socket_path(name);
        let create = |source| UapiError::Create {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(SOCKET_DIR).map_err(create)?;
        let _ = std::fs::set_permissions(SOCKET_DIR, std::fs::Permissions::from_mode(0o755));
        // Bound under umask 077, as wireguard-go binds its own, so the socket is never open to
        // other users, not even between bind and chmod.
        // SAFETY: umask has no preconditions; the old mask is put back right after.
        let old_mask = unsafe { libc::umask(0o077) };
        let bound = UnixListener::bind(&path);
        // SAFETY: as above.
        unsafe { libc::umask(old_mask) };
        let listener = bound.map_err(create)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(create)?;
        let inode = std::fs::metadata(&path).map_err(create)?.ino();
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = stopping.clone();
        let watched = path.clone();
        let thread = std::thread::Builder::new()
            .name("xgate-uapi".into())
            .spawn(move || serve(listener, &watched, inode, plane, stop, &flag))
            .map_err(create)?;
        Ok(Self {
            path,
            inode,
            stopping,
            thread: Some(thread),
        })
    }

    /// Stops serving and removes the socket file (as dropping does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for UapiServer {
    /// Stops serving and removes the socket file (if it is still ours).
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn serve(
    listener: UnixListener,
    path: &Path,
    inode: u64,
    plane: PlaneHandle,
    stop: Sender<StopReason>,
    stopping: &AtomicBool,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stopping.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one live descriptor for up to 200 ms.
        let ready = unsafe { libc::poll(&mut pfd, 1, 200) };
        if ready > 0 {
            if let Ok((conn, _)) = listener.accept() {
                if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    tracing::warn!(
                        limit = MAX_CONNECTIONS,
                        "UAPI connection closed: too many open at once"
                    );
                    drop(conn);
                } else {
                    open.fetch_add(1, Ordering::Relaxed);
                    let (plane, count) = (plane.clone(), open.clone());
                    let spawned = std::thread::Builder::new()
                        .name("xgate-uapi-conn".into())
                        .spawn(move || {
                            if let Err(e) = handle(conn, &plane) {
                                tracing::debug!(error = %e, "UAPI connection ended");
                            }
                            count.fetch_sub(1, Ordering::Relaxed);
                        });
                    if spawned.is_err() {
                        // The thread never ran, so it never counted itself out.
                        open.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let ours = std::fs::metadata(path).is_ok_and(|m| m.ino() == inode);
        if !ours && !stopping.load(Ordering::Relaxed) {
            tracing::info!(path = %path.display(), "UAPI socket removed; stopping");
            let _ = stop.send(StopReason::SocketRemoved);
            return;
        }
    }
}

fn read_line(reader: &mut impl BufRead, line: &mut String) -> io::Result<bool> {
    line.clear();
    let n = io::Read::take(&mut *reader, MAX_LINE as u64 + 1).read_line(line)?;
    if n > MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    if line.ends_with('\n') {
        line.pop();
    }
    Ok(n > 0)
}

fn handle(conn: UnixStream, plane: &PlaneHandle) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        if !read_line(&mut reader, &mut line)? {
            return Ok(());
        }
        let command = line.clone();
        // Every command ends with a blank line; collect its body, up to MAX_COMMAND_BYTES.
        let mut body = Vec::new();
        let mut bytes = command.len();
        loop {
            if !read_line(&mut reader, &mut line)? {
                return Ok(());
            }
            if line.is_empty() {
                break;
            }
            bytes += line.len() + 1;
            if bytes > MAX_COMMAND_BYTES {
                tracing::warn!(
                    limit = MAX_COMMAND_BYTES,
                    "UAPI command too long; connection closed"
                );
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "command too long",
                ));
            }
            body.push(line.clone());
        }
        let answer = match command.as_str() {
            "get=1" | "get_xgate=1" => match plane.state(IO_TIMEOUT).ok() {
                Some(state) if command == "get=1" => {
                    format!("{}errno=0\n\n", protocol::format_get(&state))
                }
                Some(state) => format!("{}errno=0\n\n", protocol::format_xgate_stats(&state)),
                None => format!("errno=-{}\n\n", libc::EIO),
            },
            "set=1" => match protocol::parse_set(body.iter().map(String::as_str)) {
                Ok(update) => match plane.apply(update, IO_TIMEOUT) {
                    Ok(Ok(())) => "errno=0\n\n".to_string(),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "UAPI set failed");
                        format!("errno=-{}\n\n", e.errno())
                    }
                    _ => format!("errno=-{}\n\n", libc::EIO),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "UAPI set refused");
                    format!("errno=-{}\n\n", libc::EINVAL)
                }
            },
            other => {
                tracing::debug!(command = other, "unknown UAPI command");
                format!("errno=-{}\n\n", libc::EINVAL)
            }
        };
        writer.write_all(answer.as_bytes())?;
    }
}

/// A client of a running daemon's socket: sends one command and returns the answer's lines.
pub fn query(name: &str, command: &str) -> io::Result<Vec<String>> {
    let path = socket_path(name);
    let mut conn = UnixStream::connect(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach {} ({e}); is `xgate up` running for interface {name}?",
                path.display()
            ),
        )
    })?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.write_all(format!("{command}\n\n").as_bytes())?;
    let mut reader = BufReader::new(conn);
    let mut lines = Vec::new();
    let mut line = String::new();
    while read_line(&mut reader, &mut line)? && !line.is_empty() {
        lines.push(line.clone());
    }
    match lines.last().and_then(|l| l.strip_prefix("errno=")) {
        Some("0") => {
            lines.pop();
            Ok(lines)
        }
        Some(code) => Err(io::Error::other(format!("daemon answered errno={code}"))),
        None => Err(io::Error::other(
            "daemon closed the connection without an answer",
        )),
    }
}
