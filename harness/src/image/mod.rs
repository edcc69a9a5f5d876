//! The guest image: the agent built for s390x with Debian's rustc 1.85, plus busybox, as an
//! initramfs. Both are content-addressed in the cache, so an unchanged agent costs a hash of
//! its sources, not a cargo run.

pub mod initramfs;
pub mod nested;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::{self, KeyBuilder};

pub const GUEST_TARGET: &str = "s390x-unknown-linux-gnu";
/// Debian's rustc that has the s390x standard library (docs/DESIGN.md, 'The guest's Rust').
pub const GUEST_RUSTC: &str = "/usr/bin/rustc";
pub const DEFAULT_BUSYBOX: &str = "/usr/local/share/ccwrig/busybox";
/// Bump when the layout in [`initramfs::base_layout`] changes meaning.
const LAYOUT_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error("{path} not found: run `sudo ci/install-deps.sh` ({what})")]
    Missing { path: PathBuf, what: &'static str },
    #[error("building the guest agent failed (exit {status}); output in {log}:\n{tail}")]
    AgentBuild {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Nested(#[from] nested::NestedError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A temporary name beside `dest`, unique per process: tests and CLI runs build the same cache
/// entries concurrently, and a shared temporary name lets one writer rename away another's file.
pub(crate) fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}", std::process::id()));
    dest.with_file_name(name)
}

/// Moves a finished `tmp` (file or directory) into place. When another process published the
/// same content-addressed entry first, its copy is kept and ours dropped.
pub(crate) fn publish(tmp: &Path, dest: &Path) -> Result<(), ImageError> {
    match std::fs::rename(tmp, dest) {
        Ok(()) => Ok(()),
        Err(_) if dest.exists() => {
            let _ = std::fs::remove_dir_all(tmp).or_else(|_| std::fs::remove_file(tmp));
            Ok(())
        }
        Err(e) => Err(io_err(dest)(e)),
    }
}

/// The repository's `images/` directory (this crate lives in `harness/`).
pub fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("images")
}

#[derive(Debug, Clone)]
pub struct Image {
    pub initrd: PathBuf,
    pub agent: PathBuf,
    pub key: String,
    pub size: u64,
}

/// Hashes every file under `dir` whose path passes `keep`, in a stable order.
fn hash_tree(
    k: &mut KeyBuilder,
    root: &Path,
    dir: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<(), ImageError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            hash_tree(k, root, &p, keep)?;
        } else if keep(&p) {
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            k.file(&rel, &p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Builds (or finds in the cache) the static s390x agent binary.
pub fn agent_binary() -> Result<PathBuf, ImageError> {
    let rustc = Path::new(GUEST_RUSTC);
    if !rustc.exists() {
        return Err(ImageError::Missing {
            path: rustc.into(),
            what: "Debian's rustc-web 1.85 builds the s390x guest agent",
        });
    }
    let std_dir = Path::new("/usr/lib/rustlib").join(GUEST_TARGET);
    if !std_dir.exists() {
        return Err(ImageError::Missing {
            path: std_dir,
            what: "the s390x Rust standard library from libstd-rust-web-dev:s390x",
        });
    }
    let images = images_dir();
    let agent_dir = images.join("agent");
    let mut k = KeyBuilder::new("agent");
    k.str("rustc", &command_output(GUEST_RUSTC, &["--version"]));
    let is_source = |p: &Path| {
        let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        n.ends_with(".rs") || n == "Cargo.toml" || n == "Cargo.lock" || n == "config.toml"
    };
    hash_tree(&mut k, &images, &agent_dir, &is_source)?;
    hash_tree(&mut k, &images, &images.join("proto"), &is_source)?;
    let out = cache::dir("agents")?.join(format!("ccwrig-agent-{}", k.short()));
    if out.exists() {
        return Ok(out);
    }

    let log = cache::dir("agents")?.join("build.log");
    let log_file = std::fs::File::create(&log).map_err(io_err(&log))?;
    let log_err = log_file.try_clone().map_err(io_err(&log))?;
    let target_dir = agent_dir.join("target");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&agent_dir)
        .args(["build", "--release", "--locked", "--target", GUEST_TARGET])
        .env("RUSTC", GUEST_RUSTC)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdout(log_file)
        .stderr(log_err);
    // A harness started by cargo inherits variables meant for the host build.
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
    ] {
        cmd.env_remove(v);
    }
    // A first agent build takes minutes: say so, also in a CI log.
    let mut progress = crate::progress::Progress::start("agent");
    progress.phase(
        "build",
        &format!("cargo build --release (log {})", log.display()),
    );
    let status = cmd.status().map_err(io_err(Path::new("cargo")));
    progress.finish(None);
    let status = status?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..].join("\n");
        return Err(ImageError::AgentBuild {
            status: status.to_string(),
            log,
            tail,
        });
    }
    let built = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("ccwrig-agent");
    let tmp = tmp_path(&out);
    std::fs::copy(&built, &tmp).map_err(io_err(&built))?;
    publish(&tmp, &out)?;
    Ok(out)
}

fn busybox_path() -> PathBuf {
    std::env::var_os("CCWRIG_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BUSYBOX))
}

/// Builds (or finds in the cache) the initramfs with the current agent.
pub fn build() -> Result<Image, ImageError> {
    let agent = agent_binary()?;
    let bb = busybox_path();
    if !bb.exists() {
        return Err(ImageError::Missing {
            path: bb,
            what: "a static s390x busybox from busybox-static:s390x",
        });
    }
    let agent_bytes = std::fs::read(&agent).map_err(io_err(&agent))?;
    let bb_bytes = std::fs::read(&bb).map_err(io_err(&bb))?;
    let mut k = KeyBuilder::new("initramfs");
    k.str("layout", LAYOUT_VERSION)
        .bytes("agent", &agent_bytes)
        .bytes("busybox", &bb_bytes);
    let path = cache::dir("images")?.join(format!("initramfs-{}.cpio", k.short()));
    if !path.exists() {
        let entries = initramfs::base_layout(agent_bytes, bb_bytes);
        let tmp = tmp_path(&path);
        let f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let w = initramfs::write(std::io::BufWriter::new(f), &entries).map_err(io_err(&tmp))?;
        w.into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&tmp))?;
        publish(&tmp, &path)?;
    }
    let size = std::fs::metadata(&path).map_err(io_err(&path))?.len();
    Ok(Image {
        initrd: path,
        agent,
        key: k.finish(),
        size,
    })
}

/// `base` with more files in it, written to `dest`: a second newc archive appended to the
/// first, which the kernel unpacks over it (init/initramfs.c reads concatenated archives).
/// For host-built programs a test runs in the guest (a C reproducer), without a new image.
pub fn with_files(
    base: &Path,
    files: &[initramfs::Entry],
    dest: &Path,
) -> Result<PathBuf, ImageError> {
    let mut bytes = std::fs::read(base).map_err(io_err(base))?;
    // The next archive's header must start 4-aligned; the kernel skips zero padding.
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    let bytes = initramfs::write(bytes, files).map_err(io_err(dest))?;
    std::fs::write(dest, bytes).map_err(io_err(dest))?;
    Ok(dest.to_path_buf())
}

/// Builds (or finds in the cache) the nested-profile initramfs: this image plus Debian's s390x
/// qemu-system-s390x and its libraries, for scenarios with `[machine] nested = true`.
pub fn build_nested() -> Result<Image, ImageError> {
    nested::build().map(|(image, _)| image)
}

/// The image a scenario's machine asks for (`[machine] nested = true`: the nested one).
pub fn build_for(nested: bool) -> Result<Image, ImageError> {
    if nested {
        build_nested()
    } else {
        build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The appended archive starts 4-aligned after the base's trailer, as init/initramfs.c
    /// requires, and both read back in order.
    #[test]
    fn with_files_appends_a_second_archive_the_kernel_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.cpio");
        let base_entries = initramfs::base_layout(b"AGENT".to_vec(), b"BB".to_vec());
        std::fs::write(&base, initramfs::write(Vec::new(), &base_entries).unwrap()).unwrap();
        let extra = [initramfs::Entry::File {
            path: "bin/repro".into(),
            mode: 0o755,
            data: b"\x7fELF...".to_vec(),
        }];
        let out = with_files(&base, &extra, &dir.path().join("out.cpio")).unwrap();
        let bytes = std::fs::read(out).unwrap();
        let base_len = std::fs::metadata(&base).unwrap().len() as usize;
        let second = base_len.div_ceil(512) * 512;
        assert!(bytes[base_len..second].iter().all(|b| *b == 0));
        assert_eq!(second % 4, 0);
        let mut cur = std::io::Cursor::new(&bytes[second..]);
        let r = cpio::newc::Reader::new(&mut cur).unwrap();
        assert_eq!(r.entry().name(), "bin/repro");
        assert_eq!(r.entry().mode() & 0o777, 0o755);
        assert_eq!(r.entry().file_size(), 7);
    }

    #[test]
    fn publishing_an_entry_another_process_published_keeps_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("entry");
        let ours = tmp_path(&dest);
        assert_ne!(ours, dest);
        std::fs::write(&ours, b"first").unwrap();
        publish(&ours, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"first");

        // A second writer finishing later, with its own temporary directory as the nested
        // image's root is: renaming a directory onto the existing entry fails, theirs stays.
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let late = tmp_path(&root);
        std::fs::create_dir_all(late.join("b")).unwrap();
        publish(&late, &root).unwrap();
        assert!(root.join("a").exists() && !late.exists());

        // With nothing in place, a failed rename is an error naming the destination.
        let missing = dir.path().join("nope.tmp");
        assert!(publish(&missing, &dir.path().join("nope")).is_err());
    }
}
