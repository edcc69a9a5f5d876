//! Decoding real call traces with the real vmlinux of the kernel that printed them.
//!
//! Each row: a console log recorded from a real run, the build request of the kernel it ran
//! (looked up in the kernel cache: build it with `ccwrig kernel build` plus the row's
//! options), and lines the decoded trace must contain.

use std::path::{Path, PathBuf};

use ccwrig::kernel::{self, BuildRequest, Profile};
use ccwrig::oracle::crash;
use ccwrig::symbolize::{self, FrameRole, Symbolizer};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The cached kernel for `patches` (None: the pinned fast 6.12), or None when not built.
fn kernel_for(patches: Option<&str>) -> Option<kernel::Kernel> {
    let mut req = BuildRequest::new(Profile::Fast);
    req.patches = patches.map(|p| repo().join(p));
    let k = kernel::cached(&req).expect("kernel cache lookup");
    if k.is_none() {
        eprintln!(
            "skipped: no cached kernel for patches {patches:?}; build it with `ccwrig kernel build{}`",
            patches.map(|p| format!(" --patches {p}")).unwrap_or_default()
        );
    }
    k
}

/// The cached build a recorded run came from, by the key in its kernel.json: raw addresses
/// only mean something against that exact vmlinux (another config moves every symbol).
fn kernel_of_run(run: &str) -> Option<(PathBuf, PathBuf)> {
    let rec = kernel::KernelRecord::read(&data(run)).expect("the run records its kernel.json");
    let key = rec.key.expect("kernel.json names the build key");
    let dir = ccwrig::cache::dir("kernels").ok()?.join(&key[..16]);
    let (vmlinux, src) = (dir.join("vmlinux"), rec.src.unwrap_or_default());
    if vmlinux.exists() && src.exists() {
        return Some((vmlinux, src));
    }
    eprintln!(
        "skipped: the build {} that recorded {run} is not in the kernel cache",
        &key[..16]
    );
    None
}

struct Row {
    log: &'static str,
    patches: Option<&'static str>,
    title: &'static str,
    /// Substrings of the rendered trace, in order of appearance.
    lines: &'static [&'static str],
}

const ROWS: &[Row] = &[
    Row {
        // The seed sequence on 6.12.117 with the NOT_OPER/OPEN jump-table entry removed.
        log: "symbolize/6.12-seed-notoper-open-run/console.log",
        patches: Some("kernel/patches/seed-notoper-open"),
        title: "illegal operation in vfio_ccw_mdev_ioctl",
        lines: &[
            " PSW [<0000000000000002>] 0x2",
            "a call through a NULL function pointer",
            "vfio_ccw_mdev_ioctl+0x3ae/0x588) drivers/s390/cio/vfio_ccw_ops.c:627",
            "inlined: vfio_ccw_mdev_reset drivers/s390/cio/vfio_ccw_ops.c:28",
            "vfio_device_fops_unl_ioctl+0x6a/0x688 drivers/vfio/vfio_main.c:1309",
            "__s390x_sys_ioctl+0x4b6/0xa70 fs/ioctl.c:892",
            "system_call+0x78/0xa0 arch/s390/kernel/entry.S:",
            "last breaking event [<000003ffe045a480>] vfio_ccw_mdev_ioctl+0x190/0x588 drivers/s390/cio/vfio_ccw_ops.c:627",
            "inlined: vfio_ccw_fsm_event drivers/s390/cio/vfio_ccw_private.h:184",
        ],
    },
    Row {
        // The 5.15-rc1 seed oops decoded against a 6.12 vmlinux: module frames and symbols of
        // another build must be said to be undecodable, not decoded to wrong lines.
        log: "reports/seed-5.15-rc1-vfio-ccw-teardown-oops.log",
        patches: None,
        title: "illegal operation in vfio_ccw_mdev_ioctl",
        lines: &[
            "a call through a NULL function pointer",
            "vfio_ccw_mdev_ioctl+0x84/0x318 [vfio_ccw])",
            "note: printed as part of module vfio_ccw, but built into this vmlinux: the trace comes from another build",
            "__s390x_sys_ioctl+0xbe/0x100",
            "note: printed size 0x100, but __s390x_sys_ioctl is 0xa6c bytes in this vmlinux: the trace comes from another build; not decoded",
        ],
    },
];

#[test]
fn real_traces_decode_to_file_and_line() {
    for row in ROWS {
        let Some(k) = kernel_for(row.patches) else {
            continue;
        };
        let s = Symbolizer::open(&k.vmlinux, Some(&k.src)).expect("vmlinux opens");
        assert!(
            s.has_lines(),
            "{}: the fast profile carries DWARF line tables",
            k.vmlinux.display()
        );
        let log = std::fs::read_to_string(data(row.log)).expect("fixture");
        let reports = crash::detect(&log);
        let report = reports
            .iter()
            .find(|r| r.title == row.title)
            .unwrap_or_else(|| panic!("{}: no {:?}", row.log, row.title));
        let trace = symbolize::decode(report, &s);
        let text = symbolize::render(&trace);
        let mut at = 0;
        for want in row.lines {
            match text[at..].find(want) {
                Some(i) => at += i + want.len(),
                None => panic!("{}: missing (in order) {want:?} in\n{text}", row.log),
            }
        }
    }
}

#[test]
fn roles_and_kaslr_slide_of_the_seed_trace() {
    let Some((vmlinux, src)) = kernel_of_run("symbolize/6.12-seed-notoper-open-run") else {
        return;
    };
    let s = Symbolizer::open(&vmlinux, Some(&src)).unwrap();
    let log =
        std::fs::read_to_string(data("symbolize/6.12-seed-notoper-open-run/console.log")).unwrap();
    let report = crash::detect(&log).into_iter().next().unwrap();
    let t = symbolize::decode(&report, &s);
    let roles: Vec<FrameRole> = t.frames.iter().map(|f| f.role).collect();
    assert_eq!(roles[0], FrameRole::Psw);
    assert_eq!(roles[1], FrameRole::Exact, "the first entry is at the PSW");
    assert_eq!(*roles.last().unwrap(), FrameRole::LastBreak);
    assert!(roles[2..roles.len() - 1]
        .iter()
        .all(|r| *r == FrameRole::Return));
    // 6.12 on s390 runs the kernel at 0x3ffe0000000 while vmlinux is linked at 0.
    assert_eq!(t.slide, Some(0x3ffe0000000));
    // Raw addresses go back through the slide to the function they are in.
    // kallsyms prints the distance to the next symbol (0x588); ELF has the unpadded 0x582.
    let (name, off, size) = s
        .symbols()
        .containing(0x3ffe045a480 - 0x3ffe0000000)
        .unwrap();
    assert_eq!((name, off, size), ("vfio_ccw_mdev_ioctl", 0x190, 0x582));
    assert!(t.decoded() >= 7, "{} frames decoded", t.decoded());
}
