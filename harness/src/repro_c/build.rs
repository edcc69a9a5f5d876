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

/// Whether `cc` can be run at all (tests that need it skip without it).
pub fn available(cc: &str) -> bool {
    Command::new(cc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
