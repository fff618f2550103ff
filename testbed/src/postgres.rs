//! A throwaway PostgreSQL server from the distribution's packages: `initdb` in a directory
//! of its own under /tmp, listening only on a Unix socket in that directory, run as the
//! `postgres` system user (PostgreSQL refuses to run as root). Tests take a database each.
//!
//! `TempPostgres::start` is stopped and removed on drop. `TempPostgres::shared` is one server
//! for a whole test binary: it runs under a thread that lives as long as the process and
//! asks the kernel to stop it when that thread goes (PR_SET_PDEATHSIG), and a later run
//! removes the directories of servers whose process has gone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The system user PostgreSQL runs as (made by Debian's `postgresql-common`).
const USER: &str = "postgres";

/// Prefix of the servers' directories under /tmp (followed by the test process's PID).
const DIR_PREFIX: &str = "xgate-pg-";

/// A running throwaway server.
pub struct TempPostgres {
    dir: PathBuf,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
    owned: bool,
}

/// Where the server programs are: Debian keeps them in /usr/lib/postgresql/VERSION/bin.
fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    // The newest version, by number.
    found.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().context(
        "PostgreSQL's server programs are not installed (no /usr/lib/postgresql/*/bin/initdb): \
         apt-get install postgresql",
    )
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = crate::netns::run(Command::new("id").args([flag, USER]))
            .with_context(|| format!("no {USER} user: apt-get install postgresql"))?;
        out.trim().parse().context("id's answer")
    };
    Ok((id("-u")?, id("-g")?))
}

/// Removes the directories of earlier shared servers whose test process has gone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl TempPostgres {
    /// Makes and starts a server named `name` (a directory /tmp/xgate-pg-PID-NAME).
    pub fn start(name: &str) -> Result<Self> {
        let mut server = Self::init(name)?;
        server.owned = true;
        server.run()?;
        Ok(server)
    }

    /// The server every test of this process shares (started at the first call).
    pub fn shared() -> Result<&'static TempPostgres> {
        static SHARED: OnceLock<std::result::Result<TempPostgres, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                remove_stale();
                let (tx, rx) = std::sync::mpsc::channel();
                // The server is this thread's child: it lives while the process does.
                std::thread::spawn(move || {
                    let started = Self::init("shared").and_then(|s| s.run().map(|()| s));
                    let _ = tx.send(started);
                    loop {
                        std::thread::park();
                    }
                });
                rx.recv()
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| format!("{e:#}")))
            })
            .as_ref()
            .map_err(|e| anyhow::anyhow!("the shared PostgreSQL server: {e}"))
    }

    fn init(name: &str) -> Result<Self> {
        let bin = bin_dir()?;
        let (uid, gid) = postgres_ids()?;
        let dir = PathBuf::from(format!("/tmp/{DIR_PREFIX}{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))
            .with_context(|| format!("creating {}", dir.display()))?;
        for d in [dir.clone(), dir.join("data")] {
            std::os::unix::fs::chown(&d, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to {USER}", d.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-D",
                "data",
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .current_dir(&dir)
            .uid(uid)
            .gid(gid);
        if let Err(e) = crate::netns::run(&mut initdb) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.context("initdb"));
        }
        Ok(Self {
            dir,
            bin,
            child: Mutex::new(None),
            owned: false,
        })
    }

    /// Starts the server process and waits until it takes connections.
    fn run(&self) -> Result<()> {
        let (uid, gid) = postgres_ids()?;
        let log = std::fs::File::create(self.dir.join("server.log"))?;
        std::os::unix::fs::chown(self.dir.join("server.log"), Some(uid), Some(gid))?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.args(["-D", "data", "-c", "listen_addresses=", "-c"])
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // Throwaway data: no waiting for the disk.
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .uid(uid)
            .gid(gid);
        // SAFETY: prctl in the child between fork and exec, after std has switched its
        // credentials (which would clear the setting); async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting postgres")?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let exited = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                bail!(
                    "PostgreSQL in {} exited at start: {}",
                    self.dir.display(),
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                );
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h"])
                .arg(&self.dir)
                .args(["-U", USER])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > until {
                bail!(
                    "PostgreSQL in {} did not start within 30 s: {}",
                    self.dir.display(),
                    std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fresh, empty database named after the caller's `name` and a counter.
    pub fn database(&self, name: &str) -> Result<String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let db = format!("{name}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let mut cmd = Command::new(self.bin.join("createdb"));
        cmd.arg("-h").arg(&self.dir).args(["-U", USER, &db]);
        crate::netns::run(&mut cmd).with_context(|| format!("createdb {db}"))?;
        Ok(self.url(&db))
    }

    /// The first column of the first row `sql` returns in the database at `url` (psql).
    pub fn scalar(&self, url: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-t", "-A", "-c", sql, url]);
        Ok(crate::netns::run(&mut cmd)
            .with_context(|| format!("psql: {sql}"))?
            .trim()
            .to_string())
    }

    /// The connection string for database `db` (over the server's Unix socket).
    pub fn url(&self, db: &str) -> String {
        format!("host={} user={USER} dbname={db}", self.dir.display())
    }

    /// Stops the server at once (as a crash would) and starts it again on the same data. For
    /// a server from `start` only: the new process is the calling thread's child (and stops
    /// when that thread ends), so the shared server is never restarted.
    pub fn restart(&self) -> Result<()> {
        self.stop_now();
        self.run()
    }

    /// Stops the server at once (SIGQUIT: immediate shutdown, no checkpoint).
    pub fn stop_now(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            // SAFETY: signals our own child by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGQUIT) };
            let _ = c.wait();
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.owned {
            self.stop_now();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
