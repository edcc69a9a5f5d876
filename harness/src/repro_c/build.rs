//! Compiling a generated reproducer: statically for s390x with the cross compiler the
//! installer provides, exactly as the file's own header tells a maintainer to.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cross compiler `ci/install-deps.sh` installs (Debian's gcc-s390x-linux-gnu).
pub const CROSS_CC: &str = "s390x-linux-gnu-gcc";

/// What the header of every generated file recommends, plus `-Werror` here: the generated C
/// must compile without a warning.
pub const FLAGS: &[&str] = &["-O2", "-Wall", "-Wextra", "-Werror", "-static", "-pthread"];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot run {cc}: {source} (run `sudo ci/install-deps.sh`)")]
    Spawn { cc: String, source: std::io::Error },
    #[error("compile cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{cc} failed on {src}:\n{stderr}")]
    Compile {
        cc: String,
        src: PathBuf,
        stderr: String,
    },
}

/// Compiles `src` into the static binary `out` with `cc` (normally [`CROSS_CC`]).
pub fn compile(cc: &str, src: &Path, out: &Path) -> Result<(), BuildError> {
    let o = Command::new(cc)
        .args(FLAGS)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .map_err(|source| BuildError::Spawn {
            cc: cc.to_string(),
            source,
        })?;
    if !o.status.success() || !o.stderr.is_empty() {
        return Err(BuildError::Compile {
            cc: cc.to_string(),
            src: src.to_path_buf(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        });
    }
    Ok(())
}

/// As [`compile`], but a source this compiler (by its `--version`) built before without a
/// word, with these flags, is not compiled again: its binary comes from the cache
/// (`cache`, normally `<cache root>/repro-c`). gcc's output and diagnostics depend on nothing else, so a hit
/// says what a compile would. Returns whether it was a hit.
pub fn compile_cached(cc: &str, src: &Path, out: &Path, cache: &Path) -> Result<bool, BuildError> {
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Cache { path, source }
    };
    let version = Command::new(cc)
        .arg("--version")
        .output()
        .map_err(|source| BuildError::Spawn {
            cc: cc.to_string(),
            source,
        })?;
    let mut key = crate::cache::KeyBuilder::new("repro-c");
    key.bytes("cc", &version.stdout)
        .str("flags", &FLAGS.join(" "))
        .file("source", src)
        .map_err(cache_err(src))?;
    std::fs::create_dir_all(cache).map_err(cache_err(cache))?;
    let entry = cache.join(key.short());
    if entry.is_file() {
        std::fs::copy(&entry, out).map_err(cache_err(&entry))?;
        return Ok(true);
    }
    compile(cc, src, out)?;
    // Written beside and renamed: a reader never sees half a binary.
    let part = cache.join(format!("{}.{}.part", key.short(), std::process::id()));
    std::fs::copy(out, &part).map_err(cache_err(&part))?;
    std::fs::rename(&part, &entry).map_err(cache_err(&entry))?;
    Ok(false)
}

/// Whether `cc` can be run at all (tests that need it skip without it).
pub fn available(cc: &str) -> bool {
    Command::new(cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_built_once_comes_from_the_cache_and_a_changed_one_does_not() {
        if !available(CROSS_CC) {
            eprintln!("skipped: no {CROSS_CC} (run `sudo ci/install-deps.sh`)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let src = dir.path().join("a.c");
        std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        assert!(!compile_cached(CROSS_CC, &src, &a, &cache).unwrap());
        assert!(compile_cached(CROSS_CC, &src, &b, &cache).unwrap());
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        std::fs::write(&src, "int main(void) { return 1; }\n").unwrap();
        assert!(!compile_cached(CROSS_CC, &src, &b, &cache).unwrap());
        assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        // A source with a warning fails and leaves nothing in the cache to hit next time.
        std::fs::write(&src, "int main(void) { int x; return 0; }\n").unwrap();
        assert!(matches!(
            compile_cached(CROSS_CC, &src, &b, &cache),
            Err(BuildError::Compile { .. })
        ));
        assert!(matches!(
            compile_cached(CROSS_CC, &src, &b, &cache),
            Err(BuildError::Compile { .. })
        ));
    }
}
