//! PID 1 duties: the pseudo filesystems, the kernel command line, the optional console shell.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::reaper;
use crate::spawn::{self, Child};
use crate::sys;

type Mount = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// What the main thread needs first: /proc (the command line), /sys (finding the agent
/// port) and /dev (already there with CONFIG_DEVTMPFS_MOUNT; mounted here if not).
pub const CORE_MOUNTS: &[Mount] = &[
    ("proc", "/proc", "proc", None),
    ("sysfs", "/sys", "sysfs", None),
    ("devtmpfs", "/dev", "devtmpfs", None),
];

/// Everything else the agent and the tools in the image need. Mounted on a helper thread
/// while the main thread finds the port: under TCG each first mount of a filesystem type is
/// mostly the translation of kernel code never run before, which the idle second vCPU can
/// do in parallel.
pub const OTHER_MOUNTS: &[Mount] = &[
    (
        "devpts",
        "/dev/pts",
        "devpts",
        Some("gid=5,mode=620,ptmxmode=666"),
    ),
    ("tracefs", "/sys/kernel/tracing", "tracefs", None),
    ("debugfs", "/sys/kernel/debug", "debugfs", None),
    ("tmpfs", "/run", "tmpfs", Some("mode=755")),
];

/// Mounts `list` in order. Failures are reported, not fatal: an already-mounted devtmpfs
/// (CONFIG_DEVTMPFS_MOUNT) answers EBUSY.
pub fn mount_all(list: &[Mount]) -> Vec<String> {
    let mut problems = Vec::new();
    for (src, dst, fs, data) in list {
        if let Err(e) = sys::mount(src, dst, fs, *data) {
            if e.errno != libc::EBUSY {
                problems.push(e.to_string());
            }
        }
    }
    problems
}

pub fn cmdline_has(flag: &str) -> bool {
    sys::read_attr("/proc/cmdline").is_some_and(|c| c.split_whitespace().any(|w| w == flag))
}

/// An interactive /bin/sh on /dev/console with the console as its controlling terminal,
/// started again whenever it exits.
pub fn spawn_shell_forever() {
    let r = std::thread::Builder::new()
        .name("shell".into())
        .spawn(|| loop {
            match sys::open("/dev/console", libc::O_RDWR) {
                Ok(con) => {
                    let fd = con.as_raw_fd();
                    let c = Child {
                        stdio: [fd, fd, fd],
                        controlling_tty: true,
                    };
                    match spawn::spawn(&["/bin/sh".to_string()], &c) {
                        Ok(pid) => {
                            drop(con);
                            let _ = reaper::wait_for(pid).recv();
                        }
                        Err(e) => sys::console(&format!("shell: {e}")),
                    }
                }
                Err(e) => sys::console(&format!("shell: {e}")),
            }
            std::thread::sleep(Duration::from_secs(1));
        });
    if let Err(e) = r {
        sys::console(&format!("shell thread: {e}"));
    }
}
