//! GCOV on vfio-ccw's objects in a cover kernel: the signal that sees interrupt and kworker
//! context (`vfio_ccw_sch_irq`, `io_todo`, `crw_todo`, `notoper_todo`) and boot-time init,
//! which the agent's per-thread KCOV cannot. Its counters are global, so a read tells what
//! ran since the last reset in any context.
//!
//! Only these objects are profiled: `GCOV_PROFILE_<stem>.o=y` on make's command line reaches
//! every directory, and the stems are unique in the tree, so no Makefile is edited and no other
//! object pays for counters. The build keeps their `.gcno` notes (the block graph and line
//! table `gcov` needs beside the counters) in the cache entry.

use super::error::{io, KernelError};
use std::path::{Path, PathBuf};

/// The profiled objects, relative to the object tree.
pub const OBJECTS: &[&str] = &[
    "drivers/s390/cio/vfio_ccw_drv.o",
    "drivers/s390/cio/vfio_ccw_ops.o",
    "drivers/s390/cio/vfio_ccw_fsm.o",
    "drivers/s390/cio/vfio_ccw_cp.o",
    "drivers/s390/cio/vfio_ccw_async.o",
    "drivers/s390/cio/vfio_ccw_chp.o",
];

/// Where a cache entry keeps the notes: `<entry>/gcov/<object path>.gcno`.
pub const NOTES_DIR: &str = "gcov";

/// `GCOV_PROFILE_vfio_ccw_drv.o=y` and so on: the make variables of a cover build.
pub fn make_vars() -> Vec<String> {
    OBJECTS
        .iter()
        .map(|o| format!("GCOV_PROFILE_{}=y", file_name(o)))
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The object path (`drivers/s390/cio/vfio_ccw_cp`, no extension) a guest gcda path ends in,
/// if it is one of ours. The kernel names its debugfs files after the build's absolute object
/// directory, which the host does not carry with the entry; the suffix is enough.
pub fn object_of(gcda_path: &str) -> Option<&'static str> {
    let stem = gcda_path.strip_suffix(".gcda")?;
    OBJECTS.iter().copied().find(|o| {
        let o = o.strip_suffix(".o").unwrap_or(o);
        stem.ends_with(&format!("/{o}")) || stem == o
    })
}

/// Copies each profiled object's `.gcno` from the object tree into the entry.
pub fn keep_notes(obj: &Path, entry: &Path) -> Result<(), KernelError> {
    for o in OBJECTS {
        let from = obj.join(o).with_extension("gcno");
        let to = notes_path(entry, o);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::copy(&from, &to).map_err(io("copying gcov notes from", &from))?;
    }
    Ok(())
}

/// The kept `.gcno` of `object` (`drivers/s390/cio/vfio_ccw_cp.o` or without `.o`).
pub fn notes_path(entry: &Path, object: &str) -> PathBuf {
    let o = object.strip_suffix(".o").unwrap_or(object);
    entry.join(NOTES_DIR).join(format!("{o}.gcno"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_vars_name_each_object_by_its_stem() {
        let v = make_vars();
        assert_eq!(v.len(), OBJECTS.len());
        assert!(v.contains(&"GCOV_PROFILE_vfio_ccw_cp.o=y".to_string()));
        assert!(v.iter().all(|s| !s.contains('/')), "{v:?}");
    }

    #[test]
    fn guest_paths_map_back_to_objects_by_suffix() {
        let p = "/sys/kernel/debug/gcov/root/.cache/ccwrig/kernels/x/obj/drivers/s390/cio/vfio_ccw_fsm.gcda";
        assert_eq!(object_of(p), Some("drivers/s390/cio/vfio_ccw_fsm.o"));
        assert_eq!(object_of("/x/drivers/s390/cio/css.gcda"), None);
        // A longer stem that merely ends like ours is not ours.
        assert_eq!(object_of("/x/drivers/s390/cio/my_vfio_ccw_fsm.gcda"), None);
        assert_eq!(object_of("/x/drivers/s390/cio/vfio_ccw_fsm.gcno"), None);
        assert_eq!(
            notes_path(Path::new("/e"), "drivers/s390/cio/vfio_ccw_cp.o"),
            Path::new("/e/gcov/drivers/s390/cio/vfio_ccw_cp.gcno")
        );
    }
}
