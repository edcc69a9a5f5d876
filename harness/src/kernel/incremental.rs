//! Incremental builds of a user's tree: one persistent object directory per (tree, config
//! inputs), so that rebuilding after a one-file edit recompiles that file and relinks
//! instead of building the whole kernel again. The cache entry of each result is still keyed
//! by content; only the work directory is shared between builds of the same tree (also by
//! builds with different patch series: `patched.rs` keeps that from mixing their objects).

use super::error::{io, KernelError};
use super::fragment::Fragment;
use super::lock::Lock;
use crate::cache::KeyBuilder;
use std::path::{Path, PathBuf};

/// Written into the object directory once it holds a verified `.config`.
const CONFIGURED: &str = ".ccwrig-configured";

pub struct WorkDir {
    pub root: PathBuf,
    _lock: Lock,
}

pub struct Inputs<'a> {
    pub tree: &'a Path,
    pub fragments: &'a [Fragment],
    pub user_config: Option<&'a [u8]>,
    pub compiler: &'a str,
    pub patched: bool,
}

impl WorkDir {
    /// The work directory for these inputs, locked against a concurrent build of the same.
    pub fn open(i: &Inputs) -> Result<WorkDir, KernelError> {
        WorkDir::open_in(&crate::cache::dir("kernel-work")?, i)
    }

    fn open_in(base: &Path, i: &Inputs) -> Result<WorkDir, KernelError> {
        let mut k = KeyBuilder::new("kernel-tree-work");
        k.str("tree", &i.tree.to_string_lossy());
        for f in i.fragments {
            k.str("fragment", &f.text);
        }
        match i.user_config {
            Some(c) => k.bytes("user-config", c),
            None => k.str("base-config", "allnoconfig"),
        };
        k.str("compiler", i.compiler);
        k.str("patched", if i.patched { "yes" } else { "no" });
        let root = base.join(k.short());
        let lock = Lock::acquire(&base.join(format!("{}.lock", k.short())))?;
        std::fs::create_dir_all(root.join("obj")).map_err(io("creating", &root))?;
        Ok(WorkDir { root, _lock: lock })
    }

    pub fn obj(&self) -> PathBuf {
        self.root.join("obj")
    }

    /// Where the patched copy of the tree lives; its path stays the same across builds, so
    /// kbuild's recorded command lines do not change and nothing is rebuilt for that.
    pub fn src(&self) -> PathBuf {
        self.root.join("src")
    }

    /// Whether an earlier build configured the object directory (same inputs, by the key).
    pub fn configured(&self) -> bool {
        self.obj().join(CONFIGURED).is_file() && self.obj().join(".config").is_file()
    }

    pub fn mark_configured(&self) -> Result<(), KernelError> {
        let m = self.obj().join(CONFIGURED);
        std::fs::write(&m, b"").map_err(io("writing", &m))
    }

    /// Copies what a cache entry needs into `staging`, laid out like an object directory,
    /// leaving the work directory's own files in place for the next incremental build.
    pub fn stage(&self, staging: &Path) -> Result<(), KernelError> {
        for rel in [
            "arch/s390/boot/bzImage",
            "vmlinux",
            ".config",
            "include/config/kernel.release",
        ] {
            let (from, to) = (self.obj().join(rel), staging.join(rel));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            if from.is_file() {
                std::fs::copy(&from, &to).map_err(io("copying to", &to))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_copies_outputs_and_keeps_the_work_tree() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("linux");
        let frag = [Fragment {
            name: "f".into(),
            text: "CONFIG_VFIO=y\n".into(),
        }];
        let inputs = Inputs {
            tree: &tree,
            fragments: &frag,
            user_config: None,
            compiler: "gcc",
            patched: false,
        };
        let w = WorkDir::open_in(d.path(), &inputs).unwrap();
        assert!(!w.configured());
        std::fs::create_dir_all(w.obj().join("arch/s390/boot")).unwrap();
        std::fs::create_dir_all(w.obj().join("include/config")).unwrap();
        for f in [
            "arch/s390/boot/bzImage",
            "vmlinux",
            ".config",
            "include/config/kernel.release",
        ] {
            std::fs::write(w.obj().join(f), f).unwrap();
        }
        w.mark_configured().unwrap();
        assert!(w.configured());
        let staging = d.path().join("entry/obj");
        w.stage(&staging).unwrap();
        assert_eq!(
            std::fs::read_to_string(staging.join("vmlinux")).unwrap(),
            "vmlinux"
        );
        assert!(
            w.obj().join("vmlinux").is_file(),
            "the work tree keeps its outputs"
        );
        let root = w.root.clone();
        drop(w);
        let other = Inputs {
            patched: true,
            ..inputs
        };
        assert_ne!(
            WorkDir::open_in(d.path(), &other).unwrap().root,
            root,
            "patched builds get their own"
        );
    }
}
