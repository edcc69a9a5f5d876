//! No QEMU may outlive the harness: not after SIGKILL (what nextest's timeout ends with),
//! not after SIGTERM, not after Ctrl-C.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Starts `ccwrig boot`, waits until its QEMU child exists (mid-boot), sends `sig` to the
/// harness, and asserts QEMU is gone shortly after.
fn kill_harness_mid_boot(sig: i32, name: &str) {
    let bz = common::fast_kernel();
    common::image();
    let out = common::run_dir(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ccwrig"))
        .args(["boot", "--kernel"])
        .arg(&bz)
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ccwrig");
    let harness = child.id();
    let qemu = wait_for(Duration::from_secs(30), || {
        common::qemu_pids(Some(harness)).first().copied()
    })
    .expect("ccwrig started no QEMU");
    // SAFETY: plain kill(2) on a child we own.
    unsafe { libc::kill(harness as i32, sig) };
    let _ = child.wait();
    let gone = wait_for(Duration::from_secs(5), || (!alive(qemu)).then_some(()));
    assert!(
        gone.is_some(),
        "QEMU {qemu} survived signal {sig} to the harness {harness}"
    );
}

#[test]
fn sigkill_of_the_harness_kills_qemu() {
    kill_harness_mid_boot(libc::SIGKILL, "orphan-kill");
}

#[test]
fn sigterm_of_the_harness_kills_qemu() {
    kill_harness_mid_boot(libc::SIGTERM, "orphan-term");
}

#[test]
fn ctrl_c_of_the_harness_kills_qemu() {
    kill_harness_mid_boot(libc::SIGINT, "orphan-int");
}
