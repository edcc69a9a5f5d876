//! The nested image profile: the base image plus Debian's s390x `qemu-system-s390x`, so the
//! guest agent can start a real QEMU on an mdev (docs/DESIGN.md, 'Nested QEMU').
//!
//! Pipeline, each stage cached under `cache::dir("nested")`:
//! 1. resolve: the pinned qemu package's `Depends`, followed recursively through library
//!    packages (`Section: libs`), gives the download set — derived from apt, not hand-kept;
//! 2. download: `apt-get download` into `debs/`, each file checked against apt's SHA-256;
//! 3. extract: `dpkg-deb -x` of every package into `root-<key>/`;
//! 4. closure: the binary's ELF `DT_NEEDED` entries, followed recursively, must each be found
//!    in the extracted packages (a missing soname is an error naming it); only those files,
//!    the dynamic loader and the firmware go into the image.
//!
//! The archive stays uncompressed like the base image: measured on the nested image, the
//! guest's boot to agent-ready under TCG is faster than with gzip (numbers in the issue note).
//!
//! Modules: [`pin`] reads the pin, [`apt`] resolves and locates the download set,
//! [`download`] fetches and checks it, [`extract`] unpacks it, [`closure`] picks the files
//! the binary needs, [`assemble`] writes the archive.

mod apt;
mod assemble;
mod closure;
mod download;
mod extract;
mod pin;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use apt::{plan, resolve, PkgSpec, Plan};
pub use closure::{closure, Placed};
pub use download::{download, Deb};
pub use pin::Pin;

use super::{io_err, Image, ImageError};
use crate::cache::{self, KeyBuilder};
use extract::extract;

/// Bump when the image layout below changes meaning.
const NESTED_LAYOUT_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum NestedError {
    #[error("{path}: {source}")]
    Pin {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Apt {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("apt has no {spec} (is bookworm-backports configured and `dpkg --add-architecture s390x` done? see ci/install-deps.sh)")]
    NoPackage { spec: String },
    #[error("{file}: SHA-256 is {got}, apt expects {want}")]
    Checksum {
        file: String,
        got: String,
        want: String,
    },
    #[error("{path}: {why}")]
    Elf { path: PathBuf, why: String },
    #[error("soname {soname} (needed by {needed_by}) is in none of the downloaded packages [{packages}]; looked in {dirs}")]
    MissingSoname {
        soname: String,
        needed_by: String,
        packages: String,
        dirs: String,
    },
    #[error("{path} is missing from the extracted packages")]
    MissingFile { path: String },
}

/// What a build did, for the caller's log and the numbers.
#[derive(Debug, Clone, Default)]
pub struct NestedReport {
    pub packages: Vec<String>,
    pub libraries: Vec<String>,
    pub downloaded: usize,
    pub cached_image: bool,
}

fn run(cmd: &mut Command) -> Result<String, ImageError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(io_err(Path::new(cmd.get_program())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(NestedError::Apt {
            cmd: shown,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        }
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds (or finds in the cache) the nested initramfs.
pub fn build() -> Result<(Image, NestedReport), ImageError> {
    let (pin, pin_text) = Pin::load()?;
    let mut report = NestedReport::default();
    let agent = super::agent_binary()?;
    let bb = super::busybox_path();
    if !bb.exists() {
        return Err(ImageError::Missing {
            path: bb,
            what: "a static s390x busybox from busybox-static:s390x",
        });
    }
    let plan = plan(&pin, &pin_text)?;
    report.packages = plan.specs.iter().map(|s| s.spec.clone()).collect();
    let debs = download(&plan, &mut report)?;

    let agent_bytes = std::fs::read(&agent).map_err(io_err(&agent))?;
    let bb_bytes = std::fs::read(&bb).map_err(io_err(&bb))?;
    let mut k = KeyBuilder::new("initramfs-nested");
    k.str("layout", super::LAYOUT_VERSION)
        .str("nested-layout", NESTED_LAYOUT_VERSION)
        .str("pin", &pin_text)
        .bytes("agent", &agent_bytes)
        .bytes("busybox", &bb_bytes);
    for d in &debs {
        k.str(&d.package, &d.sha256);
    }
    let path = cache::dir("nested")?.join(format!("initramfs-nested-{}.cpio", k.short()));
    report.cached_image = path.exists();
    if !path.exists() {
        let root = extract(&debs)?;
        let names: Vec<String> = debs.iter().map(|d| d.package.clone()).collect();
        let files = closure(&root, &pin, &names)?;
        report.libraries = files
            .iter()
            .filter(|f| f.guest.contains(".so"))
            .map(|f| f.guest.clone())
            .collect();
        assemble::write(&path, agent_bytes, bb_bytes, &files)?;
    }
    let size = std::fs::metadata(&path).map_err(io_err(&path))?.len();
    Ok((
        Image {
            initrd: path,
            agent,
            key: k.finish(),
            size,
        },
        report,
    ))
}

/// The whole pipeline against apt (downloads ~40 packages on the first run):
/// `cargo test --lib image::nested::build_tests -- --ignored --nocapture`.
#[cfg(test)]
mod build_tests {
    #[test]
    #[ignore = "downloads Debian packages and builds the guest agent"]
    fn builds_the_nested_image() {
        let t0 = std::time::Instant::now();
        let (img, rep) = super::build().unwrap();
        println!(
            "image {} ({} bytes) in {:.1} s",
            img.initrd.display(),
            img.size,
            t0.elapsed().as_secs_f64()
        );
        println!(
            "{} packages, {} downloaded, cached image: {}",
            rep.packages.len(),
            rep.downloaded,
            rep.cached_image
        );
        println!(
            "{} libraries: {}",
            rep.libraries.len(),
            rep.libraries.join(" ")
        );
        assert!(img.size > 10 << 20);
    }
}
