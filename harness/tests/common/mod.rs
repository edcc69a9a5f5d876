//! Shared by the integration tests that boot real guests.
#![allow(dead_code)]

use std::path::PathBuf;

use ccwrig::kernel::{BuildRequest, Profile};

/// The fast kernel (a cache hit after the first build; CI builds it before the tests).
pub fn fast_kernel() -> PathBuf {
    let req = BuildRequest::new(Profile::Fast);
    match ccwrig::kernel::build(&req) {
        Ok(k) => k.bzimage,
        Err(e) => panic!("cannot build the fast kernel: {e}"),
    }
}

pub fn image() -> ccwrig::image::Image {
    match ccwrig::image::build() {
        Ok(i) => i,
        Err(e) => panic!("cannot build the guest image: {e}"),
    }
}

/// A run directory under the target dir that survives the test, for post-mortems.
pub fn run_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("runs")
        .join(format!("{name}-{}", std::process::id()));
    // A stale directory left in place would mix an old run's files into this one's.
    match std::fs::remove_dir_all(&d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            panic!("cannot clear {}: {e}", d.display())
        }
        _ => {}
    }
    std::fs::create_dir_all(&d).expect("create run dir");
    d
}

/// Runs a scenario given as TOML text on the fast kernel in a fresh VM, in its own run
/// directory; asserts it passed and returns that directory for the test's own checks.
pub async fn run_passing(toml: &str, name: &str) -> PathBuf {
    use ccwrig::run::{run_scenario, BootKernel, RunOptions};
    let bz = fast_kernel();
    let img = image();
    let dir = run_dir(name);
    let sc = ccwrig::scenario::parse_str(toml, name, None).expect("parses");
    let opts = RunOptions::new(BootKernel::of_bzimage(&bz), img.initrd, dir.clone());
    let r = run_scenario(&sc, &opts).await.expect("the run happens");
    assert!(
        r.verdict.passed,
        "{}: {:?}",
        r.verdict.line(),
        r.verdict.findings
    );
    assert_eq!(r.phase, None, "no phase ended the run early");
    dir
}

/// Pids of live qemu-system-s390x processes whose parent is `ppid` (or any, with None).
pub fn qemu_pids(ppid: Option<u32>) -> Vec<u32> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm is in parentheses and may contain spaces; fields after it are fixed.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').map(|i| i + 1).unwrap_or(0)..close];
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let state = rest.first().copied().unwrap_or("");
        let parent: u32 = rest.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if comm.starts_with("qemu-system-s39") && state != "Z" && ppid.is_none_or(|p| p == parent) {
            v.push(pid);
        }
    }
    v
}
