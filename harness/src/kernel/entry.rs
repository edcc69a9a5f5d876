//! One cache entry: moving a finished build's outputs into place, and reading them back.

use super::error::{io, KernelError};
use super::Profile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A built kernel in the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub bzimage: PathBuf,
    /// With symbols (and debug info where the profile has it) for decoding call traces.
    pub vmlinux: PathBuf,
    pub config: PathBuf,
    pub dir: PathBuf,
    /// `make kernelrelease`, e.g. `6.12.117`.
    pub release: String,
    pub key: String,
    pub cache_hit: bool,
    pub build_log: PathBuf,
    /// The (patched) source tree it was built from, e.g. to read driver headers.
    pub src: PathBuf,
    pub profile: Profile,
    /// Built with KCOV (`--cover`).
    pub cover: bool,
}

const META: &str = "meta.json";

/// A cache entry's `meta.json`, written last when the entry is complete. The one definition:
/// the cache (`load`) and the run record (`record.rs`) both read it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Meta {
    pub key: String,
    pub profile: Profile,
    /// Absent in entries sealed before cover kernels existed: those have no KCOV.
    #[serde(default)]
    pub cover: bool,
    pub release: String,
    pub src: PathBuf,
    pub source: String,
    pub patches: Vec<String>,
    pub build_seconds: f64,
}

/// The `meta.json` of the entry at `dir`, if there is a readable one.
pub(crate) fn read_meta(dir: &Path) -> Option<Meta> {
    let text = std::fs::read(dir.join(META)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The entry at `dir` if it is complete and belongs to `key`.
pub fn load(dir: &Path, key: &str) -> Result<Option<Kernel>, KernelError> {
    let meta_path = dir.join(META);
    let Ok(text) = std::fs::read(&meta_path) else {
        return Ok(None);
    };
    let meta: Meta = serde_json::from_slice(&text).map_err(|source| KernelError::Meta {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.key != key {
        // A short-key collision (or a hand-edited entry): not ours, rebuild over it.
        return Ok(None);
    }
    let k = kernel(dir, meta, true);
    if !(k.bzimage.is_file() && k.vmlinux.is_file() && k.config.is_file()) {
        return Ok(None);
    }
    Ok(Some(k))
}

fn kernel(dir: &Path, meta: Meta, cache_hit: bool) -> Kernel {
    Kernel {
        bzimage: dir.join("bzImage"),
        vmlinux: dir.join("vmlinux"),
        config: dir.join(".config"),
        dir: dir.to_path_buf(),
        release: meta.release,
        key: meta.key,
        cache_hit,
        build_log: dir.join("build.log"),
        src: meta.src,
        profile: meta.profile,
        cover: meta.cover,
    }
}

pub struct Finished<'a> {
    pub dir: &'a Path,
    pub obj: &'a Path,
    pub src: &'a Path,
    pub log: &'a Path,
    pub key: &'a str,
    pub profile: Profile,
    pub cover: bool,
    pub source: String,
    pub patches: Vec<String>,
    pub build_seconds: f64,
}

/// Moves the outputs out of the object directory, drops the rest of it (hundreds of MB that
/// nothing reads again: the same key never builds twice) and seals the entry with meta.json.
pub fn commit(f: Finished) -> Result<Kernel, KernelError> {
    let missing = |what: &str, path: PathBuf| KernelError::MissingOutput {
        what: what.into(),
        missing: path,
        log: f.log.to_path_buf(),
    };
    let release_file = f.obj.join("include/config/kernel.release");
    let release = std::fs::read_to_string(&release_file)
        .map_err(|_| missing("make", release_file.clone()))?
        .trim()
        .to_string();
    for (from, to) in [
        ("arch/s390/boot/bzImage", "bzImage"),
        ("vmlinux", "vmlinux"),
        (".config", ".config"),
    ] {
        let from = f.obj.join(from);
        if !from.is_file() {
            return Err(missing("make bzImage", from));
        }
        let to = f.dir.join(to);
        std::fs::rename(&from, &to).map_err(io("moving into the cache", &to))?;
    }
    std::fs::remove_dir_all(f.obj).map_err(io("removing", f.obj))?;
    let meta = Meta {
        key: f.key.to_string(),
        profile: f.profile,
        cover: f.cover,
        release,
        src: f.src.to_path_buf(),
        source: f.source,
        patches: f.patches,
        build_seconds: f.build_seconds,
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|source| KernelError::Meta {
        path: f.dir.to_path_buf(),
        source,
    })?;
    let tmp = f.dir.join(format!("{META}.tmp"));
    std::fs::write(&tmp, json).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, f.dir.join(META)).map_err(io("writing", f.dir.join(META)))?;
    Ok(kernel(f.dir, meta, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_obj(obj: &Path) {
        std::fs::create_dir_all(obj.join("arch/s390/boot")).unwrap();
        std::fs::create_dir_all(obj.join("include/config")).unwrap();
        std::fs::write(obj.join("arch/s390/boot/bzImage"), "bz").unwrap();
        std::fs::write(obj.join("vmlinux"), "elf").unwrap();
        std::fs::write(obj.join(".config"), "CONFIG_VFIO=y\n").unwrap();
        std::fs::write(obj.join("include/config/kernel.release"), "6.12.117\n").unwrap();
    }

    #[test]
    fn entry_is_a_hit_only_once_sealed_and_for_its_own_key() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("k");
        let obj = dir.join("obj");
        fake_obj(&obj);
        assert_eq!(load(&dir, "key1").unwrap(), None, "no meta.json yet");
        let built = commit(Finished {
            dir: &dir,
            obj: &obj,
            src: Path::new("/src"),
            log: &dir.join("build.log"),
            key: "key1",
            profile: Profile::Fast,
            cover: false,
            source: "t".into(),
            patches: vec![],
            build_seconds: 1.0,
        })
        .unwrap();
        assert!(!built.cache_hit && !obj.exists());
        assert_eq!(built.release, "6.12.117");
        let hit = load(&dir, "key1").unwrap().unwrap();
        assert!(hit.cache_hit);
        assert_eq!(hit.bzimage, dir.join("bzImage"));
        assert_eq!(load(&dir, "key2").unwrap(), None);
        std::fs::remove_file(dir.join("vmlinux")).unwrap();
        assert_eq!(
            load(&dir, "key1").unwrap(),
            None,
            "a damaged entry is rebuilt"
        );
    }
}
