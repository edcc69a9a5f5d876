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

/// The pinned source of one stable line (`6.1`, `6.12`); `None` is the default (first) entry.
pub fn pin_for(version: Option<&str>) -> Result<Pin, KernelError> {
    let Some(v) = version else {
        return default_pin();
    };
    let all = parse_all(PIN_TOML)?;
    let known: Vec<String> = all.iter().map(|p| p.version.clone()).collect();
    all.into_iter().find(|p| p.version == v).ok_or_else(|| {
        KernelError::Pin(format!(
            "no pinned kernel {v} in kernel/pin.toml (pinned: {})",
            known.join(", ")
        ))
    })
}

/// The stable lines kernel/pin.toml pins, default first.
pub fn versions() -> Result<Vec<String>, KernelError> {
    Ok(parse_all(PIN_TOML)?
        .into_iter()
        .map(|p| p.version)
        .collect())
}

fn parse(text: &str) -> Result<Pin, KernelError> {
    parse_all(text)?
        .into_iter()
        .next()
        .ok_or_else(|| KernelError::Pin("no [[kernel]] entry".into()))
}

fn parse_all(text: &str) -> Result<Vec<Pin>, KernelError> {
    let file: PinFile = toml::from_str(text).map_err(|e| KernelError::Pin(e.to_string()))?;
    file.kernel.iter().try_for_each(check)?;
    Ok(file.kernel)
}

fn check(pin: &Pin) -> Result<(), KernelError> {
    if pin.sha256.len() != 64 || !pin.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KernelError::Pin(format!(
            "sha256 {:?} is not 64 hex digits",
            pin.sha256
        )));
    }
    Ok(())
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
    fn both_stable_lines_are_pinned() {
        assert_eq!(versions().unwrap(), ["6.12", "6.1"]);
        let p = pin_for(Some("6.1")).unwrap();
        assert_eq!(p.tarball, PathBuf::from("/usr/src/linux-source-6.1.tar.xz"));
        assert_eq!(pin_for(None).unwrap().version, "6.12");
        let e = pin_for(Some("5.15")).unwrap_err().to_string();
        assert!(e.contains("pinned: 6.12, 6.1"), "{e}");
    }

    #[test]
    fn bad_sha_is_rejected() {
        let e = parse(
            "[[kernel]]\nversion=\"6.12\"\ndeb_package=\"x\"\ntarball=\"/x\"\nsha256=\"abc\"\n",
        );
        assert!(matches!(e, Err(KernelError::Pin(_))));
    }
}
