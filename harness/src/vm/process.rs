//! Starting QEMU so that it can never outlive the harness.
//!
//! Three independent guards, because each covers a way the others fail:
//! - tokio's `kill_on_drop`: the normal path, the `Vm` value goes away;
//! - its own process group, killed as a group on drop: anything QEMU forks dies too;
//! - `PR_SET_PDEATHSIG(SIGKILL)`: the harness is killed (`kill -9`, nextest's timeout, Ctrl-C)
//!   and no destructor runs.
//!
//! The parent-death signal fires when the *thread* that forked QEMU exits, not the process.
//! QEMU is therefore forked from a dedicated thread that lives until the harness process ends
//! (see [`spawner`]), never from a tokio blocking-pool thread that may retire while QEMU runs.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

use rustix::process::{Pid, Signal};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{binary} not found: run `sudo ci/install-deps.sh` (it installs qemu-system-s390x from bookworm-backports)")]
    NotFound { binary: String },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    #[error("internal: QEMU must be started inside a tokio runtime, from a live spawner thread")]
    SpawnerGone,
}

/// A running QEMU. Dropping it kills QEMU's whole process group.
pub struct QemuProcess {
    child: Option<tokio::process::Child>,
    pgid: Pid,
}

type SpawnJob = (
    tokio::process::Command,
    tokio::runtime::Handle,
    mpsc::Sender<std::io::Result<tokio::process::Child>>,
);

/// The long-lived thread every QEMU is forked from (see the module comment).
fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        // Detached on purpose: it must live as long as the process.
        let _ = std::thread::Builder::new()
            .name("qemu-spawner".into())
            .spawn(move || {
                for (mut cmd, rt, reply) in rx {
                    // The child is registered with the caller's runtime for async waiting.
                    let _entered = rt.enter();
                    let _ = reply.send(cmd.spawn());
                }
            });
        tx
    })
}

impl QemuProcess {
    /// Starts `binary args...` with stdout and stderr appended to `log`. Must be called
    /// inside a tokio runtime.
    pub fn spawn(
        binary: &Path,
        args: &[std::ffi::OsString],
        log: &Path,
    ) -> Result<Self, ProcessError> {
        let binary_s = binary.display().to_string();
        let log_err = |source| ProcessError::Log {
            path: log.display().to_string(),
            source,
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(log_err)?;
        let err = out.try_clone().map_err(log_err)?;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let parent = rustix::process::getpid();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                // The parent may have died between fork and prctl; then nobody would kill us.
                if rustix::process::getppid() != Some(parent) {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ProcessError::SpawnerGone)?;
        spawner()
            .send((cmd, rt, tx))
            .map_err(|_| ProcessError::SpawnerGone)?;
        let child = rx
            .recv()
            .map_err(|_| ProcessError::SpawnerGone)?
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    ProcessError::NotFound {
                        binary: binary_s.clone(),
                    }
                } else {
                    ProcessError::Spawn {
                        binary: binary_s.clone(),
                        source,
                    }
                }
            })?;
        let pgid = child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .ok_or(ProcessError::SpawnerGone)?;
        Ok(QemuProcess {
            child: Some(child),
            pgid,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pgid.as_raw_nonzero().get() as u32
    }

    /// Non-blocking: the exit status if QEMU has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for QEMU to exit by itself.
    pub async fn wait_timeout(&mut self, timeout: std::time::Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL to the whole group, then reap.
    pub fn kill(&mut self) {
        let _ = rustix::process::kill_process_group(self.pgid, Signal::KILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            // Reaping synchronously keeps Drop usable outside async code; SIGKILL makes
            // it immediate.
            for _ in 0..200 {
                if !matches!(c.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}
