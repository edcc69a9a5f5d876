//! One guest: the QEMU process, its QMP monitor, its console and its agent channel.

pub mod console;
pub mod cpu_state;
pub mod host_threads;
pub mod process;
pub mod qemu_args;
pub mod qmp;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};

pub use console::Console;
pub use process::QemuProcess;
pub use qemu_args::{CcwDevice, Devno, QemuCommand, Sockets, BASE_MEMORY_MIB, NESTED_MEMORY_MIB};
pub use qmp::{Qmp, QmpEvent};

use crate::agent::{Agent, AgentError, Hello, Preface};
use crate::rundir::{Artifact, RunDir};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error("QEMU exited early ({status}); last lines of {log}:\n{tail}")]
    QemuExited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("QEMU did not connect its {what} socket within {ms} ms (see {log})")]
    NoConnect {
        what: &'static str,
        ms: u64,
        log: PathBuf,
    },
    #[error("socket setup: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Qmp(#[from] qmp::QmpError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error("VM snapshot {dir}: {what}")]
    Snapshot { dir: PathBuf, what: String },
}

/// What a guest says before QEMU starts it, for a guest restored from a snapshot: the console
/// and agent streams of the boot the snapshot was taken in.
#[derive(Debug, Clone, Default)]
pub struct StreamPreface {
    pub console: Vec<u8>,
    pub agent: Preface,
}

pub struct Vm {
    process: QemuProcess,
    pub qmp: Qmp,
    pub console: Console,
    pub agent: Agent,
    pub command: QemuCommand,
    pub run_dir: PathBuf,
    pub started: Instant,
    // Keeps the socket directory alive as long as the VM; removed on drop.
    _sockets: tempfile::TempDir,
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

impl Vm {
    /// Starts QEMU for `command` (its socket paths are replaced by a fresh short directory
    /// under /tmp) and connects QMP, console and agent. Does not wait for the guest to boot.
    pub async fn launch(command: QemuCommand, dir: &RunDir) -> Result<Vm, VmError> {
        Vm::launch_with(command, dir, StreamPreface::default()).await
    }

    /// [`Vm::launch`] whose console, kernel log and trace begin with `preface`.
    pub async fn launch_with(
        mut command: QemuCommand,
        dir: &RunDir,
        preface: StreamPreface,
    ) -> Result<Vm, VmError> {
        let run_dir = dir.root();
        std::fs::create_dir_all(run_dir)?;
        // Unix socket paths are limited to 108 bytes; run directories can be deep.
        let sockdir = tempfile::Builder::new()
            .prefix("ccwrig-")
            .tempdir_in("/tmp")?;
        command.sockets = Sockets::in_dir(sockdir.path());
        let con_l = UnixListener::bind(&command.sockets.console)?;
        let qmp_l = UnixListener::bind(&command.sockets.qmp)?;
        let agent_l = UnixListener::bind(&command.sockets.agent)?;
        let log = dir.path(Artifact::QemuLog);
        dir.write(Artifact::QemuCmdline, command.display() + "\n");
        let started = Instant::now();
        let mut process = QemuProcess::spawn(&command.binary, &command.args(), &log)?;
        tracing::debug!(pid = process.pid(), "QEMU started");

        let accept = |l: UnixListener| async move { l.accept().await.map(|(s, _)| s) };
        let connect = async { tokio::try_join!(accept(con_l), accept(qmp_l), accept(agent_l)) };
        let limit = Duration::from_secs(30);
        let conns: Result<(UnixStream, UnixStream, UnixStream), VmError> = tokio::select! {
            r = connect => r.map_err(VmError::from),
            status = process.wait_timeout(limit) => Err(match status {
                Some(s) => VmError::QemuExited { status: s.to_string(), log: log.clone(), tail: tail(&log, 15) },
                None => VmError::NoConnect { what: "chardev", ms: limit.as_millis() as u64, log: log.clone() },
            }),
        };
        let (con, qmp_s, agent_s) = conns?;
        let console = Console::start(
            con.into_std()?.tap_blocking()?,
            dir.appender(Artifact::Console),
            preface.console,
        )?;
        let agent = Agent::start(agent_s, dir, preface.agent);
        let qmp = match Qmp::handshake(qmp_s, dir.appender(Artifact::Qmp)).await {
            Ok(q) => q,
            // QEMU that exits right after connecting its sockets (a file that is no kernel:
            // "Could not get IPL PSW") closes QMP first: its own words are in qemu.log.
            Err(e) => return Err(exited_or(&mut process, &log, e.into()).await),
        };
        Ok(Vm {
            process,
            qmp,
            console,
            agent,
            command,
            run_dir: run_dir.to_path_buf(),
            started,
            _sockets: sockdir,
        })
    }

    /// Waits until the agent has said hello; the time from QEMU start to here is the
    /// boot-to-ready time. Fails early if QEMU exits meanwhile.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(Hello, Duration), VmError> {
        let log = self.run_dir.join(Artifact::QemuLog.file_name());
        let hello = tokio::select! {
            h = self.agent.handshake(timeout) => match h {
                Ok(h) => h,
                Err(e) => return Err(exited_or(&mut self.process, &log, e.into()).await),
            },
            status = self.process.wait_timeout(timeout + Duration::from_secs(1)) => {
                return Err(match status {
                    Some(s) => VmError::QemuExited { status: s.to_string(), log: log.clone(), tail: self.console_tail(15) },
                    None => VmError::Agent(AgentError::NoHello(timeout.as_millis() as u64)),
                });
            }
        };
        Ok((hello, self.started.elapsed()))
    }

    fn console_tail(&self, lines: usize) -> String {
        let t = self.console.text();
        let v: Vec<&str> = t.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits for QEMU to exit by itself (after `quit`), up to `timeout`; kills it if it did
    /// not. Returns whether it exited.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let exited = self.process.wait_timeout(timeout).await.is_some();
        self.process.kill();
        exited
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.try_wait().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Powers the guest off through the agent and waits for QEMU to exit; kills it if it does
    /// not exit within `timeout`. Returns whether the exit was clean.
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
        self.request_poweroff().await;
        let clean = matches!(self.process.wait_timeout(timeout).await, Some(s) if s.success());
        self.process.kill();
        clean
    }

    /// Asks the agent to power the guest off, without waiting for QEMU to exit.
    pub async fn request_poweroff(&mut self) {
        if self.is_running() {
            // The agent cannot answer a poweroff that succeeded: don't wait for the reply.
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                self.agent
                    .request("harness", ccwrig_proto::Op::Poweroff, 100),
            )
            .await;
        }
    }

    /// Kills QEMU at once.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// The console is read by a plain thread, so its stream must be in blocking mode.
trait TapBlocking: Sized {
    fn tap_blocking(self) -> std::io::Result<Self>;
}

impl TapBlocking for std::os::unix::net::UnixStream {
    fn tap_blocking(self) -> std::io::Result<Self> {
        self.set_nonblocking(false)?;
        Ok(self)
    }
}

/// The devices a guest gets when a command does not say: two virtio-rng devices, which become
/// subchannels 0.0.0000 and 0.0.0001 (docs/DESIGN.md, 'Subchannels and devnos').
pub fn default_devices() -> Vec<CcwDevice> {
    vec![
        CcwDevice::virtio_rng(
            "rng0",
            Devno {
                cssid: 0xfe,
                ssid: 0,
                devno: 2,
            },
        ),
        CcwDevice::virtio_rng(
            "rng1",
            Devno {
                cssid: 0xfe,
                ssid: 0,
                devno: 3,
            },
        ),
    ]
}

/// How long a guest may take from QEMU start to the agent's hello. The fast kernel needs
/// about a second, the full debug kernel about twelve; a loaded CI machine needs slack.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The hello wait for a kernel `slowdown` times slower than the fast one: at least
/// [`READY_TIMEOUT`], and 30 s per unit of slowdown. A debug kernel (slowdown 8) sharing two
/// loaded cores with a kernel build was measured taking over 90 s to reach /init.
pub fn ready_timeout(slowdown: u32) -> Duration {
    READY_TIMEOUT.max(Duration::from_secs(30).saturating_mul(slowdown.max(1)))
}

/// When a connection to QEMU failed because QEMU is exiting, QEMU's own reason (the end of
/// qemu.log) is the error; otherwise `err`.
async fn exited_or(process: &mut QemuProcess, log: &Path, err: VmError) -> VmError {
    match process.wait_timeout(Duration::from_secs(2)).await {
        Some(s) => VmError::QemuExited {
            status: s.to_string(),
            log: log.to_path_buf(),
            tail: tail(log, 15),
        },
        None => err,
    }
}

/// Launches a guest and waits until its agent is ready, at most `ready` (see
/// [`ready_timeout`]).
pub async fn boot(
    command: QemuCommand,
    dir: &RunDir,
    ready: Duration,
) -> Result<(Vm, Hello, Duration), VmError> {
    let mut vm = Vm::launch(command, dir).await?;
    let (hello, took) = vm.wait_ready(ready).await?;
    Ok((vm, hello, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow kernel gets a longer wait for its agent; the fast one keeps the floor.
    #[test]
    fn hello_wait_grows_with_the_kernels_slowdown() {
        assert_eq!(ready_timeout(1), READY_TIMEOUT);
        assert_eq!(ready_timeout(0), READY_TIMEOUT);
        assert_eq!(
            ready_timeout(crate::kernel::Profile::Debug.slowdown()),
            Duration::from_secs(240)
        );
    }
}
