//! Fault injection (a kernel with `FAULT_INJECTION`, `FAILSLAB`, `FAIL_PAGE_ALLOC`: the cover
//! kernel): a request's `fail_nth` makes the nth fault point its operation's thread passes fail
//! (`/proc/thread-self/fail-nth`, as syzkaller injects faults), so error paths behind
//! allocations run on demand.

use crate::sys;

/// What the kernel leaves out by default and syzkaller turns on: allocations that may sleep
/// (nearly all of the driver's) and highmem pages are spared unless told otherwise. Single
/// pages are left out (`min-order` 1, where syzkaller has 0): whether a slab allocation needs a
/// fresh page, or a copy a page-table page, depends on the allocator's state, so counting them
/// moves the nth fault point between runs of one operation (a test that failed each of an mdev
/// create's first 70 points missed vfio-ccw's `init_dev` in 1 of 4 runs); the slab allocations,
/// where the driver's own are, come in the same order every time. Verbose 0: each injected
/// failure would otherwise print a stack dump into the log the oracles read; the step's result
/// says whether its fault was injected.
const KNOBS: &[(&str, &str)] = &[
    ("/sys/kernel/debug/failslab/ignore-gfp-wait", "N"),
    ("/sys/kernel/debug/failslab/verbose", "0"),
    ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "N"),
    ("/sys/kernel/debug/fail_page_alloc/ignore-gfp-highmem", "N"),
    ("/sys/kernel/debug/fail_page_alloc/min-order", "1"),
    ("/sys/kernel/debug/fail_page_alloc/verbose", "0"),
];

/// Sets the knobs of a kernel that has fault injection; says what it did, or nothing.
pub fn configure() -> Option<String> {
    if !std::path::Path::new("/sys/kernel/debug/failslab").exists() {
        return None;
    }
    let failed: Vec<&str> = KNOBS
        .iter()
        .filter(|(path, value)| sys::write_attr(path, value).is_err())
        .map(|(path, _)| *path)
        .collect();
    Some(match failed.is_empty() {
        true => "fault injection ready (failslab, fail_page_alloc)".into(),
        false => format!("fault injection: could not set {}", failed.join(" ")),
    })
}

const FAIL_NTH: &str = "/proc/thread-self/fail-nth";

/// Runs `f` with the calling thread's `nth` fault point made to fail. The second value says
/// whether it was (`None`: the kernel has no per-thread fault injection, or the count could
/// not be read back).
///
/// The file is opened before the count is set and read through the same descriptor: an open
/// allocates, and an allocation after `f` would use up a count `f` left (the injected fault
/// would then hit the read, not the operation).
pub fn around<T>(nth: u32, f: impl FnOnce() -> T) -> (T, Option<bool>) {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(FAIL_NTH);
    let Ok(mut file) = file else {
        return (f(), None);
    };
    if file.write_all(nth.to_string().as_bytes()).is_err() {
        return (f(), None);
    }
    let r = f();
    // The kernel counts it down to 0 as it injects; a count left means the operation passed
    // fewer fault points than `nth`.
    let mut buf = [0u8; 16];
    let left = file
        .read_at(&mut buf, 0)
        .ok()
        .and_then(|n| std::str::from_utf8(&buf[..n]).ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    let _ = file.write_all(b"0");
    (r, left.map(|l| l == 0))
}
