//! The list-ready text report of a real recorded run (the seed sequence on 6.12.117 with the
//! NOT_OPER/OPEN jump-table entry removed), decoded with that build's real vmlinux.

use std::path::{Path, PathBuf};

use ccwrig::kernel::{self, BuildRequest, Profile};
use ccwrig::report::text::{self, Extra, RunDir};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/symbolize/6.12-seed-notoper-open-run")
}

#[test]
fn seed_run_report_has_every_section_a_developer_needs() {
    let mut req = BuildRequest::new(Profile::Fast);
    req.patches =
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/patches/seed-notoper-open"));
    let Some(k) = kernel::cached(&req).unwrap() else {
        eprintln!("skipped: build the kernel with `ccwrig kernel build --patches kernel/patches/seed-notoper-open`");
        return;
    };
    let run = RunDir::load(&fixture()).unwrap();
    let decoded = text::decode_all(&run.crashes(), Some(&k.vmlinux), Some(&k.src));
    let r = text::render(&run, &decoded, &Extra::default());
    for (what, want) in [
        (
            "subject",
            "Subject: [BUG] illegal operation in vfio_ccw_mdev_ioctl (6.12.117)",
        ),
        (
            "summary",
            "on Linux 6.12.117 with one patch applied, the kernel reported \"illegal operation",
        ),
        ("patch", "0001-vfio-ccw-fsm-drop-NOT_OPER-OPEN-entry.patch"),
        ("scenario as run", "    seed = 1692444545977850787"),
        (
            "unexpected step",
            "reset handle=d -> blocked 5000 (expected EINVAL|ENODEV|ok)  <-- unexpected",
        ),
        (
            "decoded ioctl path",
            "vfio_ccw_mdev_ioctl+0x190/0x588 drivers/s390/cio/vfio_ccw_ops.c:627",
        ),
        (
            "jump-table call",
            "inlined: vfio_ccw_fsm_event drivers/s390/cio/vfio_ccw_private.h:184",
        ),
        ("FSM: OPEN through NULL", "NOT_OPER --OPEN--> "),
        ("FSM handler", "(NULL)"),
        ("console", "Relaying device request to user (#0)"),
        (
            "rerun",
            "ccwrig run --seed 1692444545977850787 --patches kernel/patches/seed-notoper-open",
        ),
    ] {
        // The summary paragraph is wrapped at 78 columns.
        let flat = r.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            r.contains(want) || flat.contains(want),
            "{what}: {want:?} missing from\n{r}"
        );
    }
    // Without a vmlinux the report still stands, with the raw trace and the reason.
    let undecoded = text::render(
        &run,
        &text::decode_all(&run.crashes(), None, None),
        &Extra::default(),
    );
    assert!(
        undecoded.contains("(not decoded: no vmlinux recorded"),
        "{undecoded}"
    );
    assert!(undecoded.contains("vfio_ccw_mdev_ioctl+0x3ae/0x588"));
}

#[test]
fn steps_read_as_sentences() {
    let run = RunDir::load(&fixture()).unwrap();
    let first = text::describe_step(&run.steps[0]);
    assert!(
        first.ends_with(
            "[setup] setup (line 16) bind driver=vfio_ccw schid=0.0.0000 -> ok (expected ok)"
        ),
        "{first}"
    );
}
