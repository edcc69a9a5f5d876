//! The packages' contents: every `.deb` unpacked with `dpkg-deb -x` into one tree.

use std::path::PathBuf;
use std::process::Command;

use super::{run, Deb};
use crate::cache::{self, KeyBuilder};
use crate::image::{io_err, publish, tmp_path, ImageError};

/// Every package extracted into one tree (cached by the packages' checksums).
pub(super) fn extract(debs: &[Deb]) -> Result<PathBuf, ImageError> {
    let mut k = KeyBuilder::new("nested-root");
    for d in debs {
        k.str(&d.package, &d.sha256);
    }
    let root = cache::dir("nested")?.join(format!("root-{}", k.short()));
    if root.exists() {
        return Ok(root);
    }
    let tmp = tmp_path(&root);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    for d in debs {
        run(Command::new("dpkg-deb").arg("-x").arg(&d.path).arg(&tmp))?;
    }
    publish(&tmp, &root)?;
    Ok(root)
}
