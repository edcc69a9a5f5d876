//! Running kbuild steps: all output goes to build.log, the latest compile/link line to the
//! progress spinner, and a failure carries the log's tail.

use super::error::{io, KernelError};
use crate::progress::Progress;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const ARCH: &str = "s390";
pub const CROSS_COMPILE: &str = "s390x-linux-gnu-";
const TAIL_LINES: usize = 30;

pub struct Runner {
    log: File,
    log_path: PathBuf,
    bar: Progress,
}

impl Runner {
    pub fn new(log_path: &Path, progress: bool) -> Result<Runner, KernelError> {
        let bar = if progress {
            Progress::start("kernel")
        } else {
            Progress::hidden()
        };
        Runner::with_progress(log_path, bar)
    }

    pub fn with_progress(log_path: &Path, bar: Progress) -> Result<Runner, KernelError> {
        let log = File::create(log_path).map_err(io("creating", log_path))?;
        Ok(Runner {
            log,
            log_path: log_path.to_path_buf(),
            bar,
        })
    }

    pub fn phase(&mut self, name: &str, message: &str) {
        self.bar.phase(name, message);
        let _ = writeln!(self.log, "### ccwrig: {name}: {message}");
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `make -C src O=obj ARCH=s390 CROSS_COMPILE=... <args>`.
    pub fn make(
        &mut self,
        step: &str,
        src: &Path,
        obj: &Path,
        args: &[String],
    ) -> Result<(), KernelError> {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(src)
            .arg(format!("O={}", obj.display()))
            .arg(format!("ARCH={ARCH}"))
            .arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
            .args(args)
            // Fixed so that two builds of the same inputs differ only in their timestamp.
            .env("KBUILD_BUILD_USER", "ccwrig")
            .env("KBUILD_BUILD_HOST", "ccwrig");
        self.run(step, cmd)
    }

    /// Runs `cmd` with stdout and stderr merged into the log, line by line.
    pub fn run(&mut self, step: &str, mut cmd: Command) -> Result<(), KernelError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let _ = writeln!(self.log, "### ccwrig: running {cmd:?}");
        let (reader, writer) =
            std::io::pipe().map_err(io("creating a pipe for", &self.log_path))?;
        let writer2 = writer
            .try_clone()
            .map_err(io("creating a pipe for", &self.log_path))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(writer2);
        let mut child = cmd.spawn().map_err(|source| KernelError::Spawn {
            program: program.clone(),
            source,
        })?;
        // The parent's copies of the write end must go, or the reader never sees EOF.
        drop(cmd);
        for line in BufReader::new(reader).split(b'\n') {
            let Ok(line) = line else { break };
            let _ = self.log.write_all(&line);
            let _ = self.log.write_all(b"\n");
            if let Some(shown) = progress_line(&String::from_utf8_lossy(&line)) {
                self.bar.set_message(&shown);
            }
        }
        let status = child
            .wait()
            .map_err(|source| KernelError::Spawn { program, source })?;
        if status.success() {
            return Ok(());
        }
        let _ = self.log.flush();
        let tail = tail(&self.log_path, TAIL_LINES);
        if !self.bar.is_hidden() {
            self.bar.println(&format!(
                "--- last {TAIL_LINES} lines of {} ---\n{tail}\n--- full log: {} ---",
                self.log_path.display(),
                self.log_path.display()
            ));
        }
        Err(KernelError::Make {
            step: step.to_string(),
            status: status.to_string(),
            log: self.log_path.clone(),
            tail,
        })
    }

    pub fn finish(&mut self, message: &str) {
        self.bar.finish(Some(&format!("kernel: {message}")));
    }
}

/// Kbuild's short lines (`  CC      drivers/s390/cio/vfio_ccw_fsm.o`) are what a human wants
/// to see moving; everything else only goes to the log.
fn progress_line(line: &str) -> Option<String> {
    let verb = line.split_whitespace().next()?;
    const VERBS: [&str; 9] = [
        "CC", "LD", "AS", "AR", "OBJCOPY", "GEN", "HOSTCC", "KSYMS", "SYNC",
    ];
    (line.starts_with("  ") && VERBS.contains(&verb))
        .then(|| line.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The last `n` lines of a file, for error reports.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_lines_drive_the_spinner() {
        assert_eq!(
            progress_line("  CC      drivers/s390/cio/vfio_ccw_fsm.o").as_deref(),
            Some("CC drivers/s390/cio/vfio_ccw_fsm.o")
        );
        assert_eq!(
            progress_line("  LD      vmlinux").as_deref(),
            Some("LD vmlinux")
        );
        assert_eq!(progress_line("make[1]: Entering directory '/x'"), None);
        assert_eq!(progress_line("drivers/x.c:1:2: error: CC"), None);
    }

    use crate::progress::Shared;

    #[test]
    fn without_a_terminal_the_build_prints_plain_progress_lines() {
        // Kbuild-shaped output, slower than the progress interval: what a CI log shows of a
        // kernel build whose stderr is not a terminal.
        let d = tempfile::tempdir().unwrap();
        let out = Shared::default();
        let bar = Progress::plain_to(
            "kernel",
            Box::new(out.clone()),
            std::time::Duration::from_millis(100),
        );
        let mut r = Runner::with_progress(&d.path().join("build.log"), bar).unwrap();
        r.phase("compile", "make -j2 bzImage");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for f in a b c; do echo \"  CC      drivers/s390/cio/$f.o\"; sleep 0.3; done",
        ]);
        r.run("compile", cmd).unwrap();
        r.finish("6.12.117 built");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "kernel: started", "{text}");
        assert!(lines[1].ends_with("compile make -j2 bzImage"), "{text}");
        for f in ["a", "b", "c"] {
            assert!(
                text.contains(&format!("compile CC drivers/s390/cio/{f}.o\n")),
                "{f}: {text}"
            );
        }
        assert_eq!(lines.last(), Some(&"kernel: 6.12.117 built"), "{text}");
    }

    #[test]
    fn failures_carry_the_tail_of_the_log() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("build.log");
        let mut r = Runner::new(&log, false).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 40); do echo line$i; done; echo oops >&2; exit 3",
        ]);
        let e = r.run("compile", cmd).unwrap_err();
        let KernelError::Make { tail, log: l, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(l, &log);
        assert!(tail.ends_with("line40\noops"), "{tail}");
        assert!(!tail.contains("line10\n"));
        assert!(
            e.to_string().contains("compile failed (exit status: 3)"),
            "{e}"
        );
    }
}
