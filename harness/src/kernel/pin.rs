//! The pinned default kernel source (`kernel/pin.toml`, compiled in so the binary and the pin
//! cannot disagree about which tarball a cache key stands for).

use super::error::KernelError;
use serde::Deserialize;
use std::path::PathBuf;

const PIN_TOML: &str = include_str!("../../../kernel/pin.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Pin {
    pub version: String,
    pub deb_package: String,
    pub tarball: PathBuf,
    pub sha256: String,
}

#[derive(Deserialize)]
struct PinFile {
    kernel: Vec<Pin>,
}

/// The default source: the first `[[kernel]]` entry of the pin file.
pub fn default_pin() -> Result<Pin, KernelError> {
    parse(PIN_TOML)
}

fn parse(text: &str) -> Result<Pin, KernelError> {
    let file: PinFile = toml::from_str(text).map_err(|e| KernelError::Pin(e.to_string()))?;
    let pin = file
        .kernel
        .into_iter()
        .next()
        .ok_or_else(|| KernelError::Pin("no [[kernel]] entry".into()))?;
    if pin.sha256.len() != 64 || !pin.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KernelError::Pin(format!(
            "sha256 {:?} is not 64 hex digits",
            pin.sha256
        )));
    }
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_pin_parses() {
        let pin = default_pin().unwrap();
        assert!(pin.deb_package.starts_with("linux-source-"));
        assert!(pin.tarball.is_absolute());
    }

    #[test]
    fn bad_sha_is_rejected() {
        let e = parse(
            "[[kernel]]\nversion=\"6.12\"\ndeb_package=\"x\"\ntarball=\"/x\"\nsha256=\"abc\"\n",
        );
        assert!(matches!(e, Err(KernelError::Pin(_))));
    }
}
