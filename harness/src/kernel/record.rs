//! What a run directory records about the kernel it booted (`kernel.json`): enough to find
//! the vmlinux for decoding, the sources for the FSM map, and to say in a report which tree,
//! commit and patches the kernel came from.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{BuildRequest, Profile};

pub const FILE: &str = "kernel.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub bzimage: PathBuf,
    pub vmlinux: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub release: Option<String>,
    /// The cache key (content address of every build input).
    pub key: Option<String>,
    pub profile: Option<Profile>,
    /// A KCOV (`--cover`) build: runs on it collect coverage.
    #[serde(default)]
    pub cover: bool,
    /// The pinned tarball and package, or the tree's path.
    pub source: Option<String>,
    /// The (patched) source the kernel was built from.
    pub src: Option<PathBuf>,
    /// The pinned stable line asked for (`--kernel-version`).
    pub version: Option<String>,
    pub tree: Option<PathBuf>,
    /// `git rev-parse HEAD` of the tree, `-dirty` appended when it had local changes.
    pub tree_head: Option<String>,
    /// `git log -1 --format=%s`.
    pub tree_subject: Option<String>,
    /// Where the series came from (a directory or an mbox) and its patches in order.
    pub patches_from: Option<PathBuf>,
    pub patches: Vec<String>,
}

impl KernelRecord {
    /// What is known from the bzImage alone: everything, when it sits in a cache entry.
    pub fn of_bzimage(bzimage: &Path) -> KernelRecord {
        let mut r = KernelRecord {
            bzimage: bzimage.to_path_buf(),
            ..Default::default()
        };
        let Some(dir) = bzimage.parent() else {
            return r;
        };
        let vmlinux = dir.join("vmlinux");
        r.vmlinux = vmlinux.is_file().then_some(vmlinux);
        let config = dir.join(".config");
        r.config = config.is_file().then_some(config);
        if let Some(m) = super::entry::read_meta(dir) {
            r.key = Some(m.key);
            r.profile = Some(m.profile);
            r.cover = m.cover;
            r.release = Some(m.release);
            r.src = Some(m.src);
            r.source = Some(m.source);
            r.patches = m.patches;
        }
        r
    }

    /// Adds what the build request says (tree and its HEAD, where the patches came from).
    pub fn with_request(mut self, req: &BuildRequest) -> KernelRecord {
        self.version = req.version.clone();
        self.patches_from = req.patches.clone();
        if let Some(tree) = &req.tree {
            self.tree = Some(tree.clone());
            self.tree_head = git(tree, &["rev-parse", "HEAD"]).map(|h| {
                let dirty = git(tree, &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{h}-dirty")
                } else {
                    h
                }
            });
            self.tree_subject = git(tree, &["log", "-1", "--format=%s"]);
        }
        self
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(FILE), json + "\n")
    }

    pub fn read(dir: &Path) -> Option<KernelRecord> {
        let b = std::fs::read(dir.join(FILE)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The driver sources the FSM map is read from, when the build's tree is still there.
    pub fn fsm_sources(&self) -> Option<(String, String)> {
        let cio = self.src.as_ref()?.join("drivers/s390/cio");
        let header = std::fs::read_to_string(cio.join("vfio_ccw_private.h")).ok()?;
        let fsm = std::fs::read_to_string(cio.join("vfio_ccw_fsm.c")).ok()?;
        Some((header, fsm))
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty() || args.first() == Some(&"status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_entry_tells_everything_and_a_loose_bzimage_little() {
        let d = tempfile::tempdir().unwrap();
        let bz = d.path().join("bzImage");
        std::fs::write(&bz, "bz").unwrap();
        let loose = KernelRecord::of_bzimage(&bz);
        assert_eq!(
            (loose.vmlinux.as_ref(), loose.release.as_ref()),
            (None, None)
        );
        std::fs::write(d.path().join("vmlinux"), "elf").unwrap();
        std::fs::write(
            d.path().join("meta.json"),
            r#"{"key":"k","profile":"fast","release":"6.1.192","src":"/s","source":"linux 6.1","patches":["0001-x.patch"],"build_seconds":1.0}"#,
        )
        .unwrap();
        let r = KernelRecord::of_bzimage(&bz);
        assert_eq!(r.release.as_deref(), Some("6.1.192"));
        assert_eq!(r.patches, ["0001-x.patch"]);
        assert_eq!(r.vmlinux, Some(d.path().join("vmlinux")));
        r.write(d.path()).unwrap();
        assert_eq!(KernelRecord::read(d.path()), Some(r));
    }

    #[test]
    fn a_git_tree_gives_its_head_and_whether_it_was_edited() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let sh = |args: &[&str]| {
            assert!(Command::new("git")
                .arg("-C")
                .arg(p)
                .args(args)
                .output()
                .unwrap()
                .status
                .success())
        };
        sh(&["init", "-q"]);
        std::fs::write(p.join("Makefile"), "all:\n").unwrap();
        sh(&["add", "."]);
        sh(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "vfio-ccw: a fix",
        ]);
        let mut req = BuildRequest::new(Profile::Fast);
        req.tree = Some(p.to_path_buf());
        let r = KernelRecord::default().with_request(&req);
        assert_eq!(r.tree_head.as_ref().map(|h| h.len()), Some(40));
        assert_eq!(r.tree_subject.as_deref(), Some("vfio-ccw: a fix"));
        std::fs::write(p.join("Makefile"), "all:\n\ttrue\n").unwrap();
        let r = KernelRecord::default().with_request(&req);
        assert!(r.tree_head.unwrap().ends_with("-dirty"));
    }
}
