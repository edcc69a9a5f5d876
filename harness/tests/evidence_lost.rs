//! A run whose directory fills up mid-run: the lost artifacts are findings of the verdict
//! (and said on stderr), never a silent gap in the evidence. The directory is a tmpfs of a
//! few KB, so the guest's own console output fills it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ccwrig::run::{self, FindingKind, RunOptions, Subject};
use ccwrig::rundir::Artifact;

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("tmpfs")
            .arg(at)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a {size} tmpfs at {} failed ({st}): this test needs root, as CI has",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_directory_is_reported_not_lost() {
    let bz = common::fast_kernel();
    let img = common::image();
    let mnt = common::run_dir("evidence_lost").join("tiny");
    let _fs = Tmpfs::mount(&mnt, "12k");
    let sc = ccwrig::scenario::parse_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/basic_lifecycle.toml"),
    )
    .expect("library scenario");
    let mut opts = RunOptions::new(
        run::BootKernel::of_bzimage(&bz),
        img.initrd,
        mnt.join("run"),
    );
    opts.seed = Some(1);
    // A cold boot's console is the stream that overflows the 12 KiB first; a restored VM's
    // console (what the snapshot's boot printed and a little more) still fits, and the
    // smaller files after it are what is lost then.
    opts.boot = ccwrig::vm::snapshot::BootMode::Cold;
    let r = run::run_scenario(&sc, &opts)
        .await
        .expect("the run itself happens; only its files are lost");
    let lost: Vec<&Path> = r
        .verdict
        .findings
        .iter()
        .filter_map(|f| match &f.subject {
            Subject::EvidenceLost { path, .. } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    assert!(!r.verdict.passed, "{}", r.verdict.line());
    assert!(
        r.verdict
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::EvidenceLost),
        "{:?}",
        r.verdict.findings
    );
    // The console is the largest stream and the first to hit the limit; result.json is written
    // last, onto a full file system.
    let console = opts.run_dir.join(Artifact::Console.file_name());
    let result = opts.run_dir.join(Artifact::Result.file_name());
    assert!(lost.contains(&console.as_path()), "lost: {lost:?}");
    assert!(lost.contains(&result.as_path()), "lost: {lost:?}");
    assert!(
        r.verdict.line().contains("evidence lost"),
        "{}",
        r.verdict.line()
    );
}
