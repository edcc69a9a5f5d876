//! `images/nested.toml`: the pinned Debian QEMU packages and what the image takes from them.

use std::path::PathBuf;

use serde::Deserialize;

use super::NestedError;
use crate::image::{images_dir, io_err, ImageError};

/// `images/nested.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub arch: String,
    pub qemu_package: String,
    pub data_package: String,
    pub version: String,
    pub qemu_binary: String,
    pub data_files: Vec<String>,
    pub not_libraries: Vec<String>,
}

impl Pin {
    pub fn path() -> PathBuf {
        images_dir().join("nested.toml")
    }

    pub fn load() -> Result<(Pin, String), ImageError> {
        let path = Self::path();
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let pin = toml::from_str(&text).map_err(|source| NestedError::Pin { path, source })?;
        Ok((pin, text))
    }

    /// The path of the QEMU binary inside the guest.
    pub fn guest_binary(&self) -> String {
        format!("/{}", self.qemu_binary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_file_parses() {
        let (pin, _) = Pin::load().unwrap();
        assert_eq!(pin.arch, "s390x");
        assert!(pin.data_files.iter().any(|f| f.ends_with("s390-ccw.img")));
    }
}
