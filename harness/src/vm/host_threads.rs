//! Where QEMU's own threads are. A guest stuck because the machine does not carry out what it
//! asked (a vCPU that never performs a stop order) is explained by QEMU's stacks, not by the
//! guest's: gdb attaches to the QEMU process and prints every thread's backtrace. Debian's
//! QEMU exports its global functions (it is linked `-rdynamic` for its modules), so the frames
//! that matter have names without debug symbols, and `-name debug-threads=on` names each vCPU
//! thread (`CPU 0/TCG`).

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

#[derive(Debug, thiserror::Error)]
pub enum HostThreadsError {
    #[error("no gdb on PATH to read QEMU's threads with")]
    NoGdb,
    #[error("{gdb} -p {pid}: {source}")]
    Spawn {
        gdb: &'static str,
        pid: u32,
        source: std::io::Error,
    },
    #[error("{gdb} -p {pid} printed no thread (not allowed to attach?): {said}")]
    NoThreads {
        gdb: &'static str,
        pid: u32,
        said: String,
    },
    #[error("{gdb} -p {pid} did not finish within {secs} s")]
    Timeout {
        gdb: &'static str,
        pid: u32,
        secs: u64,
    },
}

/// One thread of the process: its name and the functions of its frames, innermost first
/// (`??` for a frame gdb could not name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStack {
    pub name: String,
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    /// From the QEMU binary itself: no source line and no shared library named (libc's
    /// frames carry one or the other).
    pub own: bool,
}

// `Thread 3 (Thread 0x7fa8b0d726c0 (LWP 10457) "CPU 0/TCG"):`
static THREAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^Thread \d+ \(.*\(LWP \d+\) "(?P<name>[^"]*)"\):"#).expect("static regex")
});
// `#5  0x0000557111ce87bb in qemu_cond_wait_impl ()`, `#0  syscall () at …`
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(?P<func>\S+) \(").expect("static regex")
});

/// Every thread of a `thread apply all bt` text, in gdb's order.
pub fn parse(text: &str) -> Vec<ThreadStack> {
    let mut threads: Vec<ThreadStack> = Vec::new();
    for line in text.lines() {
        if let Some(c) = THREAD.captures(line) {
            threads.push(ThreadStack {
                name: c["name"].to_owned(),
                frames: vec![],
            });
        } else if let (Some(c), Some(t)) = (FRAME.captures(line), threads.last_mut()) {
            t.frames.push(Frame {
                function: c["func"].to_owned(),
                own: !line.contains(") at ") && !line.contains(") from "),
            });
        }
    }
    threads
}

/// One line per vCPU thread: its innermost named QEMU frames, e.g. `CPU 0/TCG: do_run_on_cpu
/// < handle_sigp < helper_sigp`. Empty when QEMU did not name its threads.
pub fn vcpu_summary(threads: &[ThreadStack], depth: usize) -> String {
    threads
        .iter()
        .filter(|t| is_vcpu(t))
        .map(|t| {
            let own: Vec<&str> = t
                .frames
                .iter()
                .filter(|f| f.own && f.function != "??")
                .take(depth)
                .map(|f| f.function.as_str())
                .collect();
            format!("{}: {}\n", t.name, own.join(" < "))
        })
        .collect()
}

/// Where a vCPU thread waits for another vCPU (QEMU's `cpus-common.c`): `do_run_on_cpu` until
/// the target vCPU has run a work item, `start_exclusive` until every other vCPU has left its
/// execution loop.
const WAITS_FOR_A_VCPU: [&str; 2] = ["do_run_on_cpu", "start_exclusive"];

fn is_vcpu(t: &ThreadStack) -> bool {
    t.name.starts_with("CPU ")
}

/// Every vCPU thread (two or more) waits for another vCPU: none can go on. One look can catch
/// a moment (two vCPUs entering exclusive sections at once sort themselves out); the same in
/// two looks a second apart is a deadlock.
pub fn vcpus_wait_for_each_other(threads: &[ThreadStack]) -> bool {
    let vcpus: Vec<&ThreadStack> = threads.iter().filter(|t| is_vcpu(t)).collect();
    vcpus.len() >= 2
        && vcpus.iter().all(|t| {
            t.frames
                .iter()
                .any(|f| f.own && WAITS_FOR_A_VCPU.contains(&f.function.as_str()))
        })
}

const GDB_WAIT: Duration = Duration::from_secs(30);

/// A gdb that can attach to a host process: the host's own, else Debian's multiarch one.
fn debugger() -> Option<&'static str> {
    crate::symbolize::gdb::first_on_path(&["gdb", "gdb-multiarch"])
}

/// A process's threads as gdb printed them, and read.
#[derive(Debug, Clone)]
pub struct Captured {
    /// gdb's whole output (`qemu-threads.txt`).
    pub text: String,
    pub threads: Vec<ThreadStack>,
}

/// Every thread's backtrace of process `pid` (an error when gdb printed no thread). gdb stops
/// the process while it reads and lets it go on when it detaches.
pub async fn capture(pid: u32) -> Result<Captured, HostThreadsError> {
    let gdb = debugger().ok_or(HostThreadsError::NoGdb)?;
    let out = tokio::process::Command::new(gdb)
        .args(["-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "set pagination off", "-ex", "thread apply all bt 40"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(GDB_WAIT, out).await {
        Err(_) => Err(HostThreadsError::Timeout {
            gdb,
            pid,
            secs: GDB_WAIT.as_secs(),
        }),
        Ok(Err(source)) => Err(HostThreadsError::Spawn { gdb, pid, source }),
        Ok(Ok(o)) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let threads = parse(&text);
            match threads.is_empty() {
                false => Ok(Captured { text, threads }),
                true => Err(HostThreadsError::NoThreads {
                    gdb,
                    pid,
                    said: text.lines().rev().take(3).collect::<Vec<_>>().join(" / "),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // gdb 13's `thread apply all bt 40` of an idle QEMU 10.0.2 (`-S`, two vCPUs,
    // `-name x,debug-threads=on`), as it printed it.
    const BT: &str = include_str!("../../tests/data/qemu-threads/idle-s.txt");

    #[test]
    fn threads_frames_and_their_origin_are_read() {
        let t = parse(BT);
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CPU 1/TCG",
                "CPU 0/TCG",
                "qemu-system-s39",
                "qemu-system-s39"
            ]
        );
        let cpu1 = &t[0];
        assert_eq!(cpu1.frames[0].function, "__futex_abstimed_wait_common64");
        assert!(!cpu1.frames[0].own, "libc frame with a source line");
        assert_eq!(cpu1.frames[5].function, "qemu_cond_wait_impl");
        assert!(cpu1.frames[5].own);
        assert_eq!(cpu1.frames[7].function, "??");
        assert_eq!(
            t[3].frames.last().map(|f| f.function.as_str()),
            Some("main")
        );
    }

    // The power-off deadlock of a nested unplug scenario (2026-12-05), as gdb printed it.
    const DEADLOCK: &str = include_str!(
        "../../../scenarios/findings/evidence/qemu-poweroff-stuck-threads.qemu-threads.txt"
    );

    #[test]
    fn vcpus_waiting_for_each_other_are_told_from_idle_ones() {
        assert!(vcpus_wait_for_each_other(&parse(DEADLOCK)));
        assert!(
            !vcpus_wait_for_each_other(&parse(BT)),
            "idle vCPUs wait for work"
        );
        // One vCPU waiting for the other, which runs: not stuck.
        let mut t = parse(DEADLOCK);
        for th in t.iter_mut().filter(|t| t.name == "CPU 1/TCG") {
            th.frames.retain(|f| f.function != "start_exclusive");
        }
        assert!(!vcpus_wait_for_each_other(&t));
        assert!(vcpu_summary(&parse(DEADLOCK), 3)
            .contains("CPU 0/TCG: qemu_cond_wait_impl < do_run_on_cpu < handle_sigp\n"));
    }

    #[test]
    fn the_summary_names_each_vcpu_threads_own_frames() {
        let s = vcpu_summary(&parse(BT), 3);
        assert_eq!(
            s,
            "CPU 1/TCG: qemu_cond_wait_impl < qemu_wait_io_event\n\
             CPU 0/TCG: qemu_cond_wait_impl < qemu_wait_io_event\n"
        );
    }
}
