//! The run directory, ccwrig's product: the one place that knows its file names and writes
//! them. Every write is checked; a write that fails is said on stderr with its path at once and
//! kept, so the verdict can report the run's evidence as incomplete instead of losing it
//! silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A fuzz finding's directory (see `fuzz::corpus`): the program that first hit it, the run
/// directory of that first hit, and its shrunk reproducer.
pub mod finding_dir {
    pub const PROGRAM: &str = "program.toml";
    pub const FIRST_RUN: &str = "first-run";
    pub const REPRO: &str = "repro.toml";
    pub const META: &str = "meta.json";
    /// Every program the VM ran since it booted, the hit's own last, as a phased scenario.
    pub const HISTORY: &str = "history.toml";
    /// The history shrunk to the programs the crash needs (replay triage).
    pub const HISTORY_REPRO: &str = "history-repro.toml";
}

/// Every file a run directory may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// Everything the guest printed on its console, as it arrived.
    Console,
    /// The kernel's own log (`/dev/kmsg` as the agent relayed it).
    Dmesg,
    /// The `vfio_ccw_*` trace events (`trace_pipe`).
    Trace,
    /// The FSM oracle's timeline per subchannel, violations marked.
    Fsm,
    /// QMP traffic and events.
    Qmp,
    /// The host end of the agent protocol.
    AgentLog,
    /// One JSON object per step outcome.
    Steps,
    /// The scenario that ran, with its seed.
    Scenario,
    /// The run's [`crate::run::RunResult`].
    Result,
    /// The kernel's build record (`kernel::KernelRecord`).
    Kernel,
    /// The QEMU command line.
    QemuCmdline,
    /// QEMU's own stderr.
    QemuLog,
    /// The kernel's answer to sysrq `w` (and `t`) when something hung.
    BlockedTasks,
    /// Output and QMP exchange of the QEMU nested in the guest.
    InnerQemuLog,
    /// kmemleak's report after the program (kernels built with kmemleak).
    Kmemleak,
    /// `ccwrig profile`'s functions by samples.
    Profile,
    /// QEMU's `info registers -a` when the guest did not power off, each PSW described.
    CpuState,
    /// Every QEMU thread's backtrace (gdb) when the guest did not power off.
    QemuThreads,
    /// How the VM started: cold, or restored from a VM snapshot and where its records join
    /// the snapshotting boot's (`vm::snapshot::BootRecord`).
    Boot,
    /// The kernel PCs the program's steps covered (a cover kernel;
    /// `coverage::kcov::ProgramCover`), read by `ccwrig cover`.
    Coverage,
}

impl Artifact {
    pub const fn file_name(self) -> &'static str {
        match self {
            Artifact::Console => "console.log",
            Artifact::Dmesg => "dmesg.txt",
            Artifact::Trace => "trace.txt",
            Artifact::Fsm => "fsm.txt",
            Artifact::Qmp => "qmp.log",
            Artifact::AgentLog => "agent.log",
            Artifact::Steps => "steps.jsonl",
            Artifact::Scenario => "scenario.toml",
            Artifact::Result => "result.json",
            Artifact::Kernel => "kernel.json",
            Artifact::QemuCmdline => "qemu.cmdline",
            Artifact::QemuLog => "qemu.log",
            Artifact::BlockedTasks => "blocked-tasks.txt",
            Artifact::InnerQemuLog => "inner-qemu.log",
            Artifact::Kmemleak => "kmemleak.txt",
            Artifact::Profile => "profile.txt",
            Artifact::CpuState => "cpu-state.txt",
            Artifact::QemuThreads => "qemu-threads.txt",
            Artifact::Boot => "boot.json",
            Artifact::Coverage => "coverage.json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// A run directory. Cheap to clone: clones share the record of failed writes.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
    lost: Arc<Mutex<Vec<(PathBuf, String)>>>,
}

impl RunDir {
    /// Creates the directory (and its parents).
    pub fn create(root: impl Into<PathBuf>) -> Result<RunDir, RunDirError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| RunDirError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(RunDir::at(root))
    }

    /// An existing run directory, to read.
    pub fn at(root: impl Into<PathBuf>) -> RunDir {
        RunDir {
            root: root.into(),
            lost: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, a: Artifact) -> PathBuf {
        self.root.join(a.file_name())
    }

    pub fn has(&self, a: Artifact) -> bool {
        self.path(a).is_file()
    }

    /// Writes an artifact whole. A failure is reported and remembered (see [`Self::lost`]);
    /// the run goes on, since what else it gathers is still evidence.
    pub fn write(&self, a: Artifact, contents: impl AsRef<[u8]>) -> bool {
        self.write_path(&self.path(a), contents.as_ref())
    }

    /// Writes a file the layout does not name (per-program files of a fuzzing VM, the
    /// kernel's blocked-task dumps of several programs) with the same checking.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> bool {
        self.write_path(&self.root.join(name), contents.as_ref())
    }

    pub fn write_json(&self, a: Artifact, value: &impl Serialize) -> bool {
        match serde_json::to_string_pretty(value) {
            Ok(j) => self.write(a, j + "\n"),
            Err(e) => {
                self.lose(&self.path(a), &e.to_string());
                false
            }
        }
    }

    pub fn read_json<T: DeserializeOwned>(&self, a: Artifact) -> Result<T, RunDirError> {
        let path = self.path(a);
        let text = std::fs::read_to_string(&path).map_err(|source| RunDirError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| RunDirError::Json { path, source })
    }

    /// An artifact's text; None when it is missing or unreadable.
    pub fn read(&self, a: Artifact) -> Option<String> {
        std::fs::read_to_string(self.path(a)).ok()
    }

    /// A file appended to as the run goes, flushed at every write (a killed run keeps what
    /// it did). Created at the first write; a VM rebooted into the same directory appends.
    pub fn appender(&self, a: Artifact) -> Appender {
        Appender {
            dir: self.clone(),
            path: self.path(a),
            file: Mutex::new(Sink::Unopened),
        }
    }

    /// The artifacts this run failed to write, with the error, in order.
    pub fn lost(&self) -> Vec<(PathBuf, String)> {
        self.lost.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn write_path(&self, path: &Path, contents: &[u8]) -> bool {
        match std::fs::write(path, contents) {
            Ok(()) => true,
            Err(e) => {
                self.lose(path, &e.to_string());
                false
            }
        }
    }

    fn lose(&self, path: &Path, error: &str) {
        eprintln!(
            "ccwrig: evidence lost: writing {} failed: {error}",
            path.display()
        );
        if let Ok(mut l) = self.lost.lock() {
            if !l.iter().any(|(p, _)| p == path) {
                l.push((path.to_path_buf(), error.to_string()));
            }
        }
    }
}

/// A streamed artifact (`steps.jsonl`, `console.log`, `qmp.log`, ...). After the first failed
/// write it stops trying, so one full disk is one report, not one per line.
#[derive(Debug)]
pub struct Appender {
    dir: RunDir,
    path: PathBuf,
    file: Mutex<Sink>,
}

#[derive(Debug)]
enum Sink {
    Unopened,
    Open(std::fs::File),
    Failed,
}

impl Appender {
    /// Appends `line` and a newline (a trailing newline of `line` is not doubled).
    pub fn line(&self, line: &str) {
        let mut buf = line.trim_end_matches('\n').as_bytes().to_vec();
        buf.push(b'\n');
        self.bytes(&buf);
    }

    pub fn bytes(&self, bytes: &[u8]) {
        let Ok(mut sink) = self.file.lock() else {
            return;
        };
        if let Sink::Unopened = *sink {
            *sink = match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => Sink::Open(f),
                Err(e) => {
                    self.dir.lose(&self.path, &e.to_string());
                    Sink::Failed
                }
            };
        }
        if let Sink::Open(file) = &mut *sink {
            if let Err(e) = file.write_all(bytes).and_then(|()| file.flush()) {
                self.dir.lose(&self.path, &e.to_string());
                *sink = Sink::Failed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_under_their_names_and_read_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = RunDir::create(tmp.path().join("run")).expect("create");
        assert!(dir.write(Artifact::Console, "hello\n"));
        assert!(dir.write_json(Artifact::Result, &serde_json::json!({"a": 1})));
        let v: serde_json::Value = dir.read_json(Artifact::Result).expect("json");
        assert_eq!(v["a"], 1);
        assert_eq!(dir.read(Artifact::Console).as_deref(), Some("hello\n"));
        let steps = dir.appender(Artifact::Steps);
        steps.line("{}");
        steps.line("{}");
        assert_eq!(dir.read(Artifact::Steps).as_deref(), Some("{}\n{}\n"));
        assert!(dir.lost().is_empty());
    }

    #[test]
    fn a_failed_write_is_kept_with_its_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = RunDir::create(tmp.path().join("run")).expect("create");
        // A directory where the file should be: the write fails on any file system.
        std::fs::create_dir(dir.path(Artifact::Fsm)).expect("mkdir");
        assert!(!dir.write(Artifact::Fsm, "x"));
        let lost = dir.lost();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].0, dir.path(Artifact::Fsm));
        let err = dir.read_json::<serde_json::Value>(Artifact::Result);
        assert!(matches!(err, Err(RunDirError::Io { .. })));
    }
}
