//! Where the kernel source comes from, what identifies it for the cache key, and getting a
//! pristine copy of it on disk for an out-of-tree (`O=`) build.

use super::error::{io, KernelError};
use super::lock::Lock;
use super::pin::Pin;
use crate::cache;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub enum Source {
    /// The pinned Debian tarball, extracted once into the cache.
    Pinned(Pin),
    /// A user's tree, built with `O=` and never written to.
    Tree { path: PathBuf, git: bool },
}

/// Labelled byte strings that together identify a source's contents.
pub type Identity = Vec<(&'static str, Vec<u8>)>;

impl Source {
    pub fn new(tree: Option<&Path>, pin: Pin) -> Result<Self, KernelError> {
        let Some(tree) = tree else {
            return Ok(Source::Pinned(pin));
        };
        if !tree.join("Makefile").is_file() || !tree.join("Kconfig").is_file() {
            return Err(KernelError::NoTree(tree.to_path_buf()));
        }
        // Kbuild refuses O= builds of a configured source dir, late and with a cryptic message.
        for found in [".config", "include/config"] {
            if tree.join(found).exists() {
                return Err(KernelError::TreeNotClean {
                    tree: tree.to_path_buf(),
                    found: found.into(),
                });
            }
        }
        let path = tree.canonicalize().map_err(io("resolving", tree))?;
        let git = git(&path, &["rev-parse", "--show-toplevel"])
            .map(|top| Path::new(String::from_utf8_lossy(&top).trim()) == path)
            .unwrap_or(false);
        Ok(Source::Tree { path, git })
    }

    /// `VERSION.PATCHLEVEL` (`6.1`): the pin's, or read from the tree's top Makefile.
    pub fn line(&self) -> Option<String> {
        match self {
            Source::Pinned(pin) => Some(pin.version.clone()),
            Source::Tree { path, .. } => {
                let text = std::fs::read_to_string(path.join("Makefile")).ok()?;
                line_from_makefile(&text)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Pinned(pin) => format!(
                "linux {} from {} ({})",
                pin.version,
                pin.tarball.display(),
                pin.deb_package
            ),
            Source::Tree { path, .. } => path.display().to_string(),
        }
    }

    /// What the cache key needs to know about the source. For the tarball that is the pinned
    /// sha256 (the tarball is checked against it before use); for a git tree, git's own view of
    /// HEAD, the diff against it and untracked files, which stays fast on a full kernel tree.
    pub fn identity(&self) -> Result<Identity, KernelError> {
        match self {
            Source::Pinned(pin) => Ok(vec![("tarball-sha256", pin.sha256.clone().into_bytes())]),
            Source::Tree { path, git: true } => {
                let mut id = vec![
                    ("git-head", git(path, &["rev-parse", "HEAD"])?),
                    (
                        "git-diff",
                        git(path, &["diff", "HEAD", "--binary", "--no-ext-diff"])?,
                    ),
                ];
                let untracked = git(path, &["ls-files", "-z", "--others", "--exclude-standard"])?;
                for name in untracked.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                    let rel = String::from_utf8_lossy(name).into_owned();
                    let file = path.join(&rel);
                    let data = if file.is_file() {
                        std::fs::read(&file).map_err(io("reading", &file))?
                    } else {
                        Vec::new()
                    };
                    id.push(("untracked-name", rel.into_bytes()));
                    id.push(("untracked-data", data));
                }
                Ok(id)
            }
            Source::Tree { path, git: false } => {
                Ok(vec![("tree-metadata", tree_metadata_hash(path)?)])
            }
        }
    }

    /// A directory holding the pristine source, ready for `make -C DIR O=...`.
    pub fn prepare(&self) -> Result<PathBuf, KernelError> {
        match self {
            Source::Pinned(pin) => extract_pinned(pin),
            Source::Tree { path, .. } => Ok(path.clone()),
        }
    }
}

/// `VERSION = 6` and `PATCHLEVEL = 1` from a kernel's top-level Makefile.
pub fn line_from_makefile(text: &str) -> Option<String> {
    let var = |name: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let (v, p) = (var("VERSION")?, var("PATCHLEVEL")?);
    (v.parse::<u32>().is_ok() && p.parse::<u32>().is_ok()).then(|| format!("{v}.{p}"))
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, KernelError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|source| KernelError::Spawn {
            program: "git".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(KernelError::Tool {
            command: format!("git {}", args.join(" ")),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// A plain directory has no cheap content index, and hashing ~1.5 GB of a kernel tree per
/// lookup would make every cache hit slow, so paths, sizes and mtimes stand in for contents.
fn tree_metadata_hash(root: &Path) -> Result<Vec<u8>, KernelError> {
    let mut h = Sha256::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io("listing", &dir))?
            .filter_map(|e| e.ok())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            h.update(rel.to_string_lossy().as_bytes());
            h.update([0]);
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            h.update(meta.len().to_le_bytes());
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            h.update(mtime.map(|d| d.as_nanos()).unwrap_or(0).to_le_bytes());
        }
    }
    Ok(h.finalize().to_vec())
}

/// Name of the marker written after a complete extraction; it holds the top-level directory.
const EXTRACTED: &str = ".ccwrig-extracted";

fn extract_pinned(pin: &Pin) -> Result<PathBuf, KernelError> {
    let sources = cache::dir("sources")?;
    let dest = sources.join(&pin.sha256[..16]);
    let read_marker = || {
        std::fs::read_to_string(dest.join(EXTRACTED))
            .ok()
            .map(|top| dest.join(top.trim()))
    };
    if let Some(top) = read_marker() {
        return Ok(top);
    }
    let _lock = Lock::acquire(&sources.join(format!("{}.lock", &pin.sha256[..16])))?;
    if let Some(top) = read_marker() {
        return Ok(top);
    }
    verify_tarball(pin)?;
    let tmp = sources.join(format!("{}.tmp", &pin.sha256[..16]));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io("removing stale", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&pin.tarball)
        .arg("-C")
        .arg(&tmp)
        .output()
        .map_err(|source| KernelError::Spawn {
            program: "tar".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(KernelError::Tool {
            command: format!("tar -xf {}", pin.tarball.display()),
            dir: tmp,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let top = std::fs::read_dir(&tmp)
        .map_err(io("listing", &tmp))?
        .filter_map(|e| e.ok())
        .find(|e| e.path().join("Makefile").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .ok_or_else(|| {
            KernelError::Pin(format!(
                "{} holds no kernel source directory",
                pin.tarball.display()
            ))
        })?;
    std::fs::write(tmp.join(EXTRACTED), &top).map_err(io("writing", tmp.join(EXTRACTED)))?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io("removing stale", &dest))?;
    }
    std::fs::rename(&tmp, &dest).map_err(io("renaming into place", &dest))?;
    Ok(dest.join(top))
}

fn verify_tarball(pin: &Pin) -> Result<(), KernelError> {
    let mut file = std::fs::File::open(&pin.tarball).map_err(|_| KernelError::TarballMissing {
        path: pin.tarball.clone(),
        deb_package: pin.deb_package.clone(),
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io("reading", &pin.tarball))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let actual = hex::encode(h.finalize());
    if !actual.eq_ignore_ascii_case(&pin.sha256) {
        return Err(KernelError::TarballChecksum {
            path: pin.tarball.clone(),
            expected: pin.sha256.clone(),
            actual,
            deb_package: pin.deb_package.clone(),
        });
    }
    Ok(())
}

/// Mirrors `from` into `to` with hard links (falling back to copies across file systems),
/// leaving out `.git`. GNU patch writes a new file and renames it over the old one, so
/// patching the copy never changes the original.
pub fn link_copy(from: &Path, to: &Path) -> Result<(), KernelError> {
    std::fs::create_dir_all(to).map_err(io("creating", to))?;
    for entry in std::fs::read_dir(from).map_err(io("listing", from))? {
        let entry = entry.map_err(io("listing", from))?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let ty = entry.file_type().map_err(io("reading", &src))?;
        if ty.is_dir() {
            link_copy(&src, &dst)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(&src).map_err(io("reading link", &src))?;
            std::os::unix::fs::symlink(target, &dst).map_err(io("creating link", &dst))?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(io("copying to", &dst))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernelish(dir: &Path) {
        std::fs::write(dir.join("Makefile"), "all:\n").unwrap();
        std::fs::write(dir.join("Kconfig"), "").unwrap();
    }

    #[test]
    fn the_line_comes_from_the_makefile() {
        let mk = "# SPDX-License-Identifier: GPL-2.0\nVERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\n";
        assert_eq!(line_from_makefile(mk).as_deref(), Some("6.1"));
        assert_eq!(line_from_makefile("VERSION = x\nPATCHLEVEL = 1\n"), None);
    }

    #[test]
    fn configured_trees_are_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        kernelish(d.path());
        std::fs::write(d.path().join(".config"), "").unwrap();
        let e = Source::new(Some(d.path()), super::super::pin::default_pin().unwrap()).unwrap_err();
        assert!(e.to_string().contains("run make mrproper in"), "{e}");
    }

    #[test]
    fn git_tree_identity_follows_edits_and_untracked_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        kernelish(p);
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
        sh(&["add", "."]);
        sh(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ]);
        let pin = super::super::pin::default_pin().unwrap();
        let src = Source::new(Some(p), pin).unwrap();
        assert!(matches!(src, Source::Tree { git: true, .. }));
        let a = src.identity().unwrap();
        assert_eq!(a, src.identity().unwrap());
        std::fs::write(p.join("Makefile"), "all:\n\ttrue\n").unwrap();
        let b = src.identity().unwrap();
        assert_ne!(a, b, "a worktree edit changes the identity");
        std::fs::write(p.join("new.c"), "int x;\n").unwrap();
        assert_ne!(
            b,
            src.identity().unwrap(),
            "an untracked file changes the identity"
        );
    }

    #[test]
    fn link_copy_leaves_the_original_alone_when_patched() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(a.join("sub/.git")).unwrap();
        std::fs::write(a.join("sub/f"), "one\ntwo\n").unwrap();
        std::fs::create_dir_all(a.join(".git")).unwrap();
        link_copy(&a, &b).unwrap();
        assert!(!b.join(".git").exists());
        let diff = "--- a/sub/f\n+++ b/sub/f\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n";
        let p = super::super::patches::Patch {
            name: "x.patch".into(),
            text: diff.into(),
        };
        super::super::patches::apply(&[p], &b).unwrap();
        assert_eq!(
            std::fs::read_to_string(a.join("sub/f")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(
            std::fs::read_to_string(b.join("sub/f")).unwrap(),
            "one\nTWO\n"
        );
    }
}
