//! Running a compiled reproducer in a ccwrig guest, the way a maintainer runs it on their own
//! machine: the binary is added to the image (a second initramfs archive), started with the
//! agent's `exec`, and its host steps are done by this host over QMP.
//!
//! The reproducer's host steps use the hooks a maintainer has: with `--kmsg` the program
//! announces each on /dev/kmsg (which the agent streams to this host), and its `--host-cmd`
//! waits for a file this host creates through the agent once the step is done, so the
//! reproducer's timing stays its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ccwrig_proto::{Op, OpResult, Outcome};

use crate::image::initramfs::Entry;
use crate::oracle::crash::CrashReport;
use crate::run::{RunOptions, Session};
use crate::scenario::Scenario;

/// Where the binary goes in the guest.
pub const GUEST_PATH: &str = "/bin/repro";
/// The kmsg line a host step announces itself with: `ccwrig-host-step N OP DEVICE`.
pub const HOST_STEP_TAG: &str = "ccwrig-host-step";

/// The `--host-cmd` each host operation gets in the guest: the program has announced the
/// step on /dev/kmsg (`--kmsg`); this waits for the host's go-ahead file.
pub fn handshake_cmd() -> String {
    format!(
        "while [ ! -e /run/{HOST_STEP_TAG}-$CCWRIG_HOST_STEP ]; do sleep 0.02 2>/dev/null || sleep 1; done"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Machine(#[from] crate::machine::MachineError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the agent did not take the exec request: {0}")]
    Agent(String),
}

/// What a reproducer run in the guest produced.
#[derive(Debug)]
pub struct GuestRun {
    /// The exec's result; `None` when the program had not ended when the run stopped (a
    /// crashed kernel, the time limit).
    pub exec: Option<OpResult>,
    /// The program's output (known only when it ended).
    pub stdout: String,
    /// Crash reports on the console since the program started.
    pub crashes: Vec<CrashReport>,
    /// What this host did for the program's host steps.
    pub host_steps: Vec<String>,
    pub console: String,
    /// The kernel log records (`prio,seq,usec,flags;text`) since the program started.
    pub kmsg: Vec<String>,
}

/// How long the program may run before the host gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(240);
/// A crashing kernel has finished its report when the console has been this quiet.
const CRASH_QUIET: Duration = Duration::from_millis(1500);
/// How often the host looks for announced host steps: their latency is part of the race.
const POLL: Duration = Duration::from_millis(10);
/// How often it looks for a crash on the console (the detector is not free).
const CRASH_POLL: Duration = Duration::from_millis(250);

/// Boots `sc`'s machine with `binary` in the image, runs it with `args` (plus the host-step
/// handshake for every host operation), and stops at its end or at the first crash.
pub async fn run(
    sc: &Scenario,
    bzimage: &Path,
    base_initrd: &Path,
    binary: &Path,
    args: &[String],
    dir: &Path,
) -> Result<GuestRun, GuestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GuestError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bin = std::fs::read(binary).map_err(io(binary))?;
    let initrd = crate::image::with_files(
        base_initrd,
        &[Entry::File {
            path: GUEST_PATH.trim_start_matches('/').into(),
            mode: 0o755,
            data: bin,
        }],
        &dir.join("initrd-with-repro.cpio"),
    )?;
    let opts = RunOptions::new(
        crate::run::BootKernel::of_bzimage(bzimage),
        initrd,
        dir.to_path_buf(),
    );
    let machine = crate::machine::MachineSpec::of(&sc.machine)?;
    let mut session = Session::boot(&machine, &opts).await?;
    let result = drive(&session, args).await;
    // A crashed or stuck guest does not power off: kill it.
    session.tainted = result
        .as_ref()
        .map_or(true, |r| r.exec.is_none() || !r.crashes.is_empty());
    session.shutdown().await;
    let r = result?;
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io(&p))
    };
    write("console.log", &r.console)?;
    write("repro.out", &r.stdout)?;
    write("host-steps.txt", &(r.host_steps.join("\n") + "\n"))?;
    write("dmesg.txt", &(r.kmsg.join("\n") + "\n"))?;
    Ok(r)
}

async fn drive(session: &Session, args: &[String]) -> Result<GuestRun, GuestError> {
    let vm = &session.vm;
    let console_mark = vm.console.len();
    let kmsg_mark = vm.agent.kmsg_lines().len();
    let mut argv = vec![GUEST_PATH.to_string(), "--kmsg".to_string()];
    argv.extend(args.iter().filter(|a| *a != "--kmsg").cloned());
    for op in super::HOST_OPS {
        argv.push("--host-cmd".into());
        argv.push(format!("{op}={}", handshake_cmd()));
    }
    let limit_ms = RUN_LIMIT.as_millis() as u64;
    let exec = vm.agent.request("repro", Op::Exec { argv }, limit_ms);
    tokio::pin!(exec);
    let start = Instant::now();
    let mut done_steps = 0usize;
    let mut host_steps = Vec::new();
    let mut exec_result: Option<OpResult> = None;
    let mut crashes = Vec::new();
    let mut last_crash_check = Instant::now();
    loop {
        tokio::select! {
            r = &mut exec => {
                match r {
                    Ok((_, res)) if !matches!(res.outcome, Outcome::Blocked { .. }) => {
                        exec_result = Some(res);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if crate::oracle::crash::detect(&vm.console.text_since(console_mark)).is_empty() {
                            return Err(GuestError::Agent(e.to_string()));
                        }
                    }
                }
                break;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        if last_crash_check.elapsed() >= CRASH_POLL {
            last_crash_check = Instant::now();
            crashes = crate::oracle::crash::detect(&vm.console.text_since(console_mark));
            if !crashes.is_empty() || start.elapsed() > RUN_LIMIT {
                break;
            }
        }
        // New host steps, in order, from whichever stream shows the announcement first: the
        // console or the agent's kmsg relay.
        let console = vm.console.text_since(console_mark);
        let kmsg = vm.agent.kmsg_lines();
        let announced = announcements(
            complete_lines(&console).chain(
                kmsg.get(kmsg_mark.min(kmsg.len())..)
                    .unwrap_or_default()
                    .iter()
                    .map(String::as_str),
            ),
        );
        for (n, (op, device)) in announced.range(done_steps + 1..) {
            done_steps = *n;
            let line = host_step(session, &n.to_string(), op, device).await;
            host_steps.push(line);
        }
    }
    if !crashes.is_empty() {
        await_quiet(session).await;
        crashes = crate::oracle::crash::detect(&vm.console.text_since(console_mark));
    }
    let stdout = exec_result
        .as_ref()
        .and_then(|r| r.data.get("stdout"))
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    Ok(GuestRun {
        exec: exec_result,
        stdout,
        crashes,
        host_steps,
        console: vm.console.text_since(console_mark),
        kmsg: vm
            .agent
            .kmsg_lines()
            .split_off(kmsg_mark.min(vm.agent.kmsg_lines().len())),
    })
}

/// `ccwrig-host-step 1 device_del rng0` anywhere in a kmsg record -> ("1", "device_del", "rng0").
/// The lines of `text` that a newline has ended (a console line still being printed could
/// be cut inside the operation's name).
fn complete_lines(text: &str) -> impl Iterator<Item = &str> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end].lines()
}

/// Every announced host step by number, from any mix of console and kmsg lines.
fn announcements<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> std::collections::BTreeMap<usize, (String, String)> {
    lines
        .filter_map(parse_announcement)
        .filter_map(|(n, op, device)| Some((n.parse().ok()?, (op, device))))
        .collect()
}

fn parse_announcement(line: &str) -> Option<(String, String, String)> {
    let rest = &line[line.find(HOST_STEP_TAG)? + HOST_STEP_TAG.len()..];
    let mut w = rest.split_whitespace();
    let n = w.next()?.to_string();
    let op = w.next()?.to_string();
    let device = w.next().unwrap_or_default().to_string();
    n.chars()
        .all(|c| c.is_ascii_digit())
        .then_some((n, op, device))
}

/// Does one host step over QMP, then lets the program go on.
async fn host_step(session: &Session, n: &str, op: &str, device: &str) -> String {
    let vm = &session.vm;
    let ops: Vec<Op> = match op {
        "device_del" => vec![Op::DeviceDel {
            device: device.into(),
        }],
        "device_add" => vec![Op::DeviceAdd {
            device: device.into(),
        }],
        // The program is frozen between the two, so it cannot ask for the `cont` itself.
        "stop" => vec![Op::Stop, Op::Sleep { ms: 1000 }, Op::Cont],
        "cont" => vec![Op::Cont],
        "system_reset" => vec![Op::SystemReset],
        other => return format!("host step {n}: unknown operation {other:?}; not done"),
    };
    let mut said = Vec::new();
    for o in &ops {
        let r = crate::run::host_ops::execute(vm, o).await;
        said.push(format!("{} -> {}", super::op_text(o), r.outcome));
    }
    let go = Op::Exec {
        argv: vec!["touch".into(), format!("/run/{HOST_STEP_TAG}-{n}")],
    };
    let released = match vm.agent.request("host", go, 5000).await {
        Ok((_, r)) => r.outcome.to_string(),
        Err(e) => e.to_string(),
    };
    format!(
        "host step {n}: {}; program released: {released}",
        said.join(", ")
    )
}

async fn await_quiet(session: &Session) {
    let vm = &session.vm;
    let start = Instant::now();
    let mut len = vm.console.len();
    let mut changed = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(POLL).await;
        let now = vm.console.len();
        if now != len {
            len = now;
            changed = Instant::now();
        } else if changed.elapsed() >= CRASH_QUIET {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_from_console_and_kmsg_count_once_and_skip_cut_lines() {
        let console = "[    4.427467] ccwrig-host-step 1 device_del rng0\n[    4.5] ccwrig-host-step 2 device_a";
        let kmsg = ["12,345,6789,-;ccwrig-host-step 1 device_del rng0"];
        let got = announcements(complete_lines(console).chain(kmsg.iter().copied()));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[&1], ("device_del".into(), "rng0".into()));
    }

    #[test]
    fn announcements_parse_from_kmsg_records() {
        type Row<'a> = (&'a str, Option<(&'a str, &'a str, &'a str)>);
        let table: &[Row] = &[
            (
                "12,345,6789,-;ccwrig-host-step 1 device_del rng0",
                Some(("1", "device_del", "rng0")),
            ),
            (
                "12,346,6790,-;ccwrig-host-step 2 stop ",
                Some(("2", "stop", "")),
            ),
            ("12,347,6791,-;repro: [ 1.0] host step 1: ...", None),
            ("ccwrig-host-step x device_del rng0", None),
        ];
        for (line, want) in table {
            let got = parse_announcement(line);
            let want = want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn the_program_announces_what_the_parser_reads() {
        // The C side writes the announcement; the handshake only waits.
        let runtime = include_str!("runtime.c");
        let written = format!("kmsg(\"{HOST_STEP_TAG} %s %s %s\", n, s->host_op");
        assert!(runtime.contains(&written), "{written}");
        let c = handshake_cmd();
        assert!(c.contains(&format!("/run/{HOST_STEP_TAG}-$CCWRIG_HOST_STEP")));
        assert_eq!(
            parse_announcement(&c),
            None,
            "the command is no announcement"
        );
    }
}
