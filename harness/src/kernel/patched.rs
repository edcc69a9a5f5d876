//! The patched copy of a user's tree in an incremental work directory, and the one rule that
//! keeps its shared object directory honest: every file that the previous series or the
//! current one made different from the tree gets a fresh mtime before make runs.
//!
//! The copy is recreated for every build as hard links to the tree, so a file that only an
//! earlier series patched comes back with the tree's own, older mtime, and make would keep the
//! object compiled from the earlier series' text. Keying the object directory by the series
//! would be correct too, but every new version of a series would then cost a full build;
//! refreshing mtimes lets make's own dependency tracking (headers included, through kbuild's
//! `.cmd` files) recompile exactly what depends on the files in question.

use super::error::{io, KernelError};
use super::patches::{self, Patch};
use super::source;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// In the object directory: the source files (relative paths) whose text in some object there
/// may differ from the tree's. Written before make runs, so an interrupted build still leaves
/// the complete list; an object directory without it is from an unknown series and is emptied.
pub const RECORD: &str = ".ccwrig-patched-files";

/// A patched copy ready for make, with what to record once make has succeeded.
#[derive(Debug)]
pub struct PatchedCopy {
    pub src: PathBuf,
    /// Files whose objects hold non-tree text after this build: the ones this series changed,
    /// and earlier ones that this series deleted (not refreshed, so still unsettled).
    after_build: BTreeSet<String>,
}

/// Recreates `copy` from `tree`, applies `series`, and gives every file that differs from the
/// tree now, or did in a build recorded in `obj`, a fresh mtime (never through a hard link:
/// the tree itself is not written to).
pub fn prepare(
    tree: &Path,
    series: &[Patch],
    copy: &Path,
    obj: &Path,
) -> Result<PatchedCopy, KernelError> {
    let record = obj.join(RECORD);
    let before = match read_record(&record)? {
        Some(files) => files,
        None => {
            // Objects of unknown origin (an interrupted first build, or a work directory
            // from before this record existed): no way to tell which are stale.
            if obj.exists() {
                std::fs::remove_dir_all(obj).map_err(io("emptying", obj))?;
            }
            std::fs::create_dir_all(obj).map_err(io("creating", obj))?;
            BTreeSet::new()
        }
    };
    if copy.exists() {
        std::fs::remove_dir_all(copy).map_err(io("removing", copy))?;
    }
    source::link_copy(tree, copy)?;
    patches::apply(series, copy)?;
    let now = differing(tree, copy)?;
    write_record(&record, before.union(&now))?;

    let stamp = SystemTime::now();
    for rel in &now {
        let file = copy.join(rel);
        if is_regular(&file) {
            // Patch wrote it as a new file: not linked to the tree.
            set_mtime(&file, stamp)?;
        }
    }
    let mut after_build = now.clone();
    for rel in before.difference(&now) {
        let (orig, file) = (tree.join(rel), copy.join(rel));
        if is_regular(&file) {
            unlink_and_copy(&orig, &file, stamp)?;
        } else if std::fs::symlink_metadata(&file).is_err() {
            // Deleted by this series: nothing to refresh yet, so it stays in the record.
            after_build.insert(rel.clone());
        }
        // A symlink is left alone: make reads the mtime of the file it points to. So a series
        // that only retargets a symlink between two unpatched files is not caught.
    }
    Ok(PatchedCopy {
        src: copy.to_path_buf(),
        after_build,
    })
}

/// After a successful make: files refreshed for this build now have objects of the tree's
/// text and leave the record.
pub fn built(c: &PatchedCopy, obj: &Path) -> Result<(), KernelError> {
    write_record(&obj.join(RECORD), c.after_build.iter())
}

fn is_regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

/// Replaces the hard link `file` with a copy of `orig` stamped `stamp`.
fn unlink_and_copy(orig: &Path, file: &Path, stamp: SystemTime) -> Result<(), KernelError> {
    let tmp = file.with_file_name(format!(
        ".{}.ccwrig-tmp",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::copy(orig, &tmp).map_err(io("copying to", &tmp))?;
    set_mtime(&tmp, stamp)?;
    std::fs::rename(&tmp, file).map_err(io("replacing", file))
}

fn set_mtime(file: &Path, stamp: SystemTime) -> Result<(), KernelError> {
    std::fs::File::options()
        .write(true)
        .open(file)
        .and_then(|f| f.set_modified(stamp))
        .map_err(io("setting the mtime of", file))
}

/// Regular files and symlinks of `copy` that are not the tree's own: patched (a new inode),
/// created by the series, or a symlink pointing elsewhere.
fn differing(tree: &Path, copy: &Path) -> Result<BTreeSet<String>, KernelError> {
    let mut out = BTreeSet::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = copy.join(&rel_dir);
        for entry in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
            let entry = entry.map_err(io("listing", &dir))?;
            let rel = rel_dir.join(entry.file_name());
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            let orig = tree.join(&rel);
            let same = if meta.is_dir() {
                stack.push(rel);
                continue;
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&orig).ok() == std::fs::read_link(&path).ok()
            } else {
                std::fs::symlink_metadata(&orig)
                    .is_ok_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino())
            };
            if !same {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

fn read_record(path: &Path) -> Result<Option<BTreeSet<String>>, KernelError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

fn write_record<'a>(
    path: &Path,
    files: impl Iterator<Item = &'a String>,
) -> Result<(), KernelError> {
    let mut text = String::new();
    for f in files {
        text.push_str(f);
        text.push('\n');
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Objects are plain copies of their source, made by GNU make from mtimes, as kbuild's are.
    const MAKEFILE: &str = "all: $(OBJ)/a.o $(OBJ)/b.o\n\
        $(OBJ)/%.o: $(SRC)/%.c $(SRC)/common.h\n\tcat $^ > $@\n";

    fn series(file: &str, from: &str, to: &str) -> Vec<Patch> {
        vec![Patch {
            name: format!("{file}.patch"),
            text: format!("--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-{from}\n+{to}\n").into_bytes(),
        }]
    }

    struct Rig {
        _d: tempfile::TempDir,
        tree: PathBuf,
        copy: PathBuf,
        obj: PathBuf,
        makefile: PathBuf,
    }

    impl Rig {
        fn new() -> Rig {
            let d = tempfile::tempdir().unwrap();
            let tree = d.path().join("tree");
            std::fs::create_dir_all(tree.join("sub")).unwrap();
            std::fs::write(tree.join("a.c"), "a tree\n").unwrap();
            std::fs::write(tree.join("b.c"), "b tree\n").unwrap();
            std::fs::write(tree.join("common.h"), "h tree\n").unwrap();
            std::fs::write(tree.join("sub/keep"), "untouched\n").unwrap();
            let makefile = d.path().join("Makefile");
            std::fs::write(&makefile, MAKEFILE).unwrap();
            Rig {
                copy: d.path().join("work/src"),
                obj: d.path().join("work/obj"),
                tree,
                makefile,
                _d: d,
            }
        }

        /// One build the way `build_incremental` does it: prepare, make, record.
        fn build(&self, s: &[Patch]) {
            let c = prepare(&self.tree, s, &self.copy, &self.obj).unwrap();
            let out = Command::new("make")
                .arg("-f")
                .arg(&self.makefile)
                .arg(format!("SRC={}", c.src.display()))
                .arg(format!("OBJ={}", self.obj.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            built(&c, &self.obj).unwrap();
        }

        fn obj(&self, name: &str) -> String {
            std::fs::read_to_string(self.obj.join(name)).unwrap()
        }
    }

    #[test]
    fn a_series_gets_no_object_of_the_previous_one() {
        let r = Rig::new();
        let tree_mtime = |f: &str| {
            std::fs::metadata(r.tree.join(f))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = tree_mtime("a.c");
        r.build(&series("a.c", "a tree", "a series A"));
        assert_eq!(r.obj("a.o"), "a series A\nh tree\n");
        r.build(&series("b.c", "b tree", "b series B"));
        assert_eq!(
            r.obj("a.o"),
            "a tree\nh tree\n",
            "series A's object was reused"
        );
        assert_eq!(r.obj("b.o"), "b series B\nh tree\n");
        assert_eq!(tree_mtime("a.c"), before, "the tree was written to");
        assert_eq!(
            std::fs::read_to_string(r.tree.join("a.c")).unwrap(),
            "a tree\n"
        );

        // A header: everything that includes it follows, in both directions.
        r.build(&series("common.h", "h tree", "h series C"));
        assert_eq!(r.obj("a.o"), "a tree\nh series C\n");
        r.build(&series("b.c", "b tree", "b series B"));
        assert_eq!(r.obj("a.o"), "a tree\nh tree\n");
        assert_eq!(r.obj("b.o"), "b series B\nh tree\n");
        assert_eq!(
            std::fs::read_to_string(r.obj.join(RECORD)).unwrap(),
            "b.c\n",
            "only the current series' file stays recorded"
        );
    }

    #[test]
    fn a_file_the_series_deletes_stays_recorded_until_it_is_rebuilt() {
        let r = Rig::new();
        r.build(&series("a.c", "a tree", "a series A"));
        // A series that deletes a.c (and so cannot build a.o): A's a.o must not survive it.
        let delete = vec![Patch {
            name: "del.patch".into(),
            text: b"--- a/a.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-a tree\n".to_vec(),
        }];
        let c = prepare(&r.tree, &delete, &r.copy, &r.obj).unwrap();
        assert!(!c.src.join("a.c").exists());
        built(&c, &r.obj).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.obj.join(RECORD)).unwrap(),
            "a.c\n"
        );
        r.build(&series("b.c", "b tree", "b series B"));
        assert_eq!(r.obj("a.o"), "a tree\nh tree\n");
    }

    #[test]
    fn objects_of_unknown_origin_are_dropped() {
        let r = Rig::new();
        std::fs::create_dir_all(&r.obj).unwrap();
        std::fs::write(r.obj.join("a.o"), "who knows\n").unwrap();
        r.build(&series("b.c", "b tree", "b series B"));
        assert_eq!(r.obj("a.o"), "a tree\nh tree\n");
    }

    #[test]
    fn differing_names_patched_created_and_relinked_files() {
        let r = Rig::new();
        source::link_copy(&r.tree, &r.copy).unwrap();
        std::os::unix::fs::symlink("a.c", r.tree.join("l")).unwrap();
        std::os::unix::fs::symlink("a.c", r.copy.join("l")).unwrap();
        assert!(differing(&r.tree, &r.copy).unwrap().is_empty());
        let mut s = series("a.c", "a tree", "a2");
        s.push(Patch {
            name: "new.patch".into(),
            text: b"--- /dev/null\n+++ b/sub/new.c\n@@ -0,0 +1 @@\n+new\n".to_vec(),
        });
        patches::apply(&s, &r.copy).unwrap();
        std::fs::remove_file(r.copy.join("l")).unwrap();
        std::os::unix::fs::symlink("b.c", r.copy.join("l")).unwrap();
        assert_eq!(
            differing(&r.tree, &r.copy)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["a.c", "l", "sub/new.c"]
        );
    }
}
