//! An exclusive lock file, so two processes asking for the same kernel build it once.

use super::error::{io, KernelError};
use std::path::Path;

/// Held until dropped; the kernel releases it if the process dies.
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    pub fn acquire(path: &Path) -> Result<Lock, KernelError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io("opening lock", path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            KernelError::Io {
                action: "locking",
                path: path.to_path_buf(),
                source: e.into(),
            }
        })?;
        Ok(Lock { _file: file })
    }
}
