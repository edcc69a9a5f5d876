//! Real kernel builds take minutes, so these are `#[ignore]`d: run them by hand with
//! `cargo test -p ccwrig --test kernel_build -- --ignored --nocapture`.

use ccwrig::kernel::{self, BuildRequest, Profile};
use std::time::{Duration, Instant};

fn build_then_hit(profile: Profile) {
    let req = BuildRequest::new(profile);
    let first = kernel::build(&req).unwrap();
    assert!(first.bzimage.is_file() && first.vmlinux.is_file());
    let config = std::fs::read_to_string(&first.config).unwrap();
    assert!(config.contains("CONFIG_VFIO_CCW=y") && config.contains("CONFIG_VFIO_DEVICE_CDEV=y"));

    let t = Instant::now();
    let second = kernel::build(&req).unwrap();
    let took = t.elapsed();
    eprintln!(
        "{profile:?}: {} in {}, second call {took:?}",
        first.release,
        first.dir.display()
    );
    assert!(second.cache_hit);
    assert_eq!(second.key, first.key);
    assert!(took < Duration::from_secs(1), "a cache hit took {took:?}");
    assert_eq!(
        kernel::cached(&req).unwrap().map(|k| k.key),
        Some(first.key)
    );
}

#[test]
#[ignore = "builds a kernel (minutes)"]
fn fast_kernel_builds_and_the_second_call_is_a_hit() {
    build_then_hit(Profile::Fast);
}

#[test]
#[ignore = "builds a kernel (minutes)"]
fn debug_kernel_builds_and_the_second_call_is_a_hit() {
    build_then_hit(Profile::Debug);
}

/// A series that adds `static const char ... = "<marker>"` at the top of `file`.
fn marker_series(dir: &std::path::Path, tree: &std::path::Path, file: &str, marker: &str) {
    let first = std::fs::read_to_string(tree.join(file))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(dir).unwrap();
    let patch = format!(
        "--- a/{file}\n+++ b/{file}\n@@ -1 +1,2 @@\n {first}\n\
         +static const char ccwrig_series_marker[] __used = \"{marker}\";\n"
    );
    std::fs::write(dir.join("0001-marker.patch"), patch).unwrap();
}

fn holds(vmlinux: &std::path::Path, marker: &str) -> bool {
    let bytes = std::fs::read(vmlinux).unwrap();
    regex::bytes::Regex::new(&regex::escape(marker))
        .unwrap()
        .is_match(&bytes)
}

/// Two series touching different files, built one after the other on one tree: each kernel
/// holds its own change and nothing of the other, although both share the tree's object
/// directory. The tree is the pinned source `ccwrig kernel build` unpacked (never written to),
/// so its work directory outlives the test and later runs cost two one-file rebuilds; the
/// markers are new on every run so that neither build is a cache hit.
#[test]
#[ignore = "builds a kernel (minutes)"]
fn two_series_in_sequence_each_kernel_has_only_its_own_change() {
    let tree = kernel::build(&BuildRequest::new(Profile::Fast))
        .unwrap()
        .src;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (ma, mb) = (format!("ccwrig-fsm-{nonce}"), format!("ccwrig-drv-{nonce}"));
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    marker_series(&a, &tree, "drivers/s390/cio/vfio_ccw_fsm.c", &ma);
    marker_series(&b, &tree, "drivers/s390/cio/vfio_ccw_drv.c", &mb);
    let fsm_mtime = || {
        std::fs::metadata(tree.join("drivers/s390/cio/vfio_ccw_fsm.c"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = fsm_mtime();

    let build = |series: &std::path::Path| {
        let mut req = BuildRequest::new(Profile::Fast);
        req.tree = Some(tree.clone());
        req.patches = Some(series.to_path_buf());
        let t = Instant::now();
        let k = kernel::build(&req).unwrap();
        eprintln!("{}: built in {:?}", series.display(), t.elapsed());
        assert!(!k.cache_hit);
        k
    };
    let ka = build(&a);
    assert!(
        holds(&ka.vmlinux, &ma),
        "series A's change is in its kernel"
    );
    assert!(!holds(&ka.vmlinux, &mb));
    let kb = build(&b);
    assert!(
        holds(&kb.vmlinux, &mb),
        "series B's change is in its kernel"
    );
    assert!(
        !holds(&kb.vmlinux, &ma),
        "series B's kernel holds series A's vfio_ccw_fsm.o"
    );
    let record = ccwrig::kernel::KernelRecord::of_bzimage(&kb.bzimage);
    assert_eq!(record.patches, ["0001-marker.patch"]);
    assert_eq!(fsm_mtime(), before, "the tree was written to");
    for k in [ka, kb] {
        std::fs::remove_dir_all(&k.dir).unwrap();
    }
}
