//! Where ccwrig keeps built kernels, images and agent binaries, and how entries are keyed.
//!
//! Entries are content-addressed: the key is a SHA-256 over every input that changes the
//! output, so a stale entry can never be reused and a hit needs no rebuild check.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no cache directory: set CCWRIG_CACHE or XDG_CACHE_HOME (HOME is not set either)")]
    NoCacheDir,
    #[error("cache directory {path} is not writable; set CCWRIG_CACHE to a writable directory")]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The cache root: `$CCWRIG_CACHE`, else `$XDG_CACHE_HOME/ccwrig`, else `~/.cache/ccwrig`.
pub fn root() -> Result<PathBuf, CacheError> {
    if let Some(p) = std::env::var_os("CCWRIG_CACHE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p).join("ccwrig"));
    }
    dirs::home_dir()
        .map(|h| h.join(".cache").join("ccwrig"))
        .ok_or(CacheError::NoCacheDir)
}

/// A sub-directory of the cache root (`kernels`, `images`, ...), created and checked for
/// writability so the user learns about a read-only cache before a long build, not after.
pub fn dir(kind: &str) -> Result<PathBuf, CacheError> {
    let d = root()?.join(kind);
    std::fs::create_dir_all(&d).map_err(|source| CacheError::NotWritable {
        path: d.clone(),
        source,
    })?;
    let probe = d.join(".write-probe");
    std::fs::write(&probe, b"").map_err(|source| CacheError::NotWritable {
        path: d.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(d)
}

/// Builds a cache key from labelled inputs. Labels are hashed too, so moving a value from one
/// input to another changes the key.
#[derive(Default, Clone)]
pub struct KeyBuilder {
    h: Sha256,
}

impl KeyBuilder {
    pub fn new(kind: &str) -> Self {
        let mut k = KeyBuilder::default();
        k.str("kind", kind);
        k
    }

    pub fn bytes(&mut self, label: &str, data: &[u8]) -> &mut Self {
        self.h.update((label.len() as u64).to_le_bytes());
        self.h.update(label.as_bytes());
        self.h.update((data.len() as u64).to_le_bytes());
        self.h.update(data);
        self
    }

    pub fn str(&mut self, label: &str, s: &str) -> &mut Self {
        self.bytes(label, s.as_bytes())
    }

    pub fn file(&mut self, label: &str, path: &Path) -> std::io::Result<&mut Self> {
        let data = std::fs::read(path)?;
        Ok(self.bytes(label, &data))
    }

    /// The key as 64 hex digits.
    pub fn finish(&self) -> String {
        hex::encode(self.h.clone().finalize())
    }

    /// A short form for directory names.
    pub fn short(&self) -> String {
        self.finish()[..16].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_labels_and_values() {
        let a = KeyBuilder::new("k").str("x", "1").str("y", "2").finish();
        let b = KeyBuilder::new("k").str("x", "1").str("y", "2").finish();
        let c = KeyBuilder::new("k").str("x", "12").str("y", "").finish();
        let d = KeyBuilder::new("k").str("y", "1").str("x", "2").finish();
        assert_eq!(a, b);
        assert_ne!(a, c, "length prefixes keep concatenations apart");
        assert_ne!(a, d, "labels are part of the key");
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn root_honours_ccwrig_cache() {
        // Environment is process-global; this is the only test in the crate touching it.
        std::env::set_var("CCWRIG_CACHE", "/tmp/ccwrig-cache-test");
        assert_eq!(root().unwrap(), PathBuf::from("/tmp/ccwrig-cache-test"));
        std::env::remove_var("CCWRIG_CACHE");
    }
}
