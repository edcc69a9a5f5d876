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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::initramfs::{self, Entry};
use super::{images_dir, io_err, Image, ImageError};
use crate::cache::{self, KeyBuilder};

/// Bump when the image layout below changes meaning.
const NESTED_LAYOUT_VERSION: &str = "1";
/// Where library sonames are looked up inside the extracted packages (Debian multiarch first).
const LIB_DIRS: &[&str] = &[
    "lib/s390x-linux-gnu",
    "usr/lib/s390x-linux-gnu",
    "lib",
    "usr/lib",
];
/// Only packages of this Debian section are followed when deriving the download set: the
/// shared libraries. Tools a library package depends on (adduser, debconf) are not needed to
/// run the binary; if one were, the soname check would say so.
const LIBRARY_SECTION: &str = "libs";

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

/// One package to download, as apt-get spells it (`name:arch=version`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
pub struct PkgSpec {
    pub name: String,
    pub spec: String,
}

/// A downloaded package file.
#[derive(Debug, Clone)]
pub struct Deb {
    pub package: String,
    pub path: PathBuf,
    pub sha256: String,
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

/// The fields of each `apt-cache show` paragraph (continuation lines joined).
fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| cur.get_mut(k)) {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.to_string(), v.trim().to_string());
            last = Some(k.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Package names of a `Depends` value: version constraints dropped, the first of each set of
/// alternatives taken, `:any` qualifiers removed.
fn depends_names(v: &str) -> Vec<String> {
    v.split(',')
        .filter_map(|alt| alt.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn apt_show(specs: &[String]) -> Result<Vec<BTreeMap<String, String>>, ImageError> {
    // apt-cache exits non-zero if any name is purely virtual, yet prints the others: read
    // stdout either way, the caller notices names without a paragraph.
    let out = Command::new("apt-cache")
        .arg("show")
        .arg("--no-all-versions")
        .args(specs)
        .output()
        .map_err(io_err(Path::new("apt-cache")))?;
    Ok(paragraphs(&String::from_utf8_lossy(&out.stdout)))
}

/// The download set: the pinned qemu and data packages plus the library closure of the qemu
/// package's dependencies.
pub fn resolve(pin: &Pin) -> Result<Vec<PkgSpec>, ImageError> {
    let qemu = format!("{}:{}={}", pin.qemu_package, pin.arch, pin.version);
    let data = format!("{}={}", pin.data_package, pin.version);
    let top = apt_show(std::slice::from_ref(&qemu))?;
    let Some(q) = top.first() else {
        return Err(NestedError::NoPackage { spec: qemu }.into());
    };
    let mut set = vec![
        PkgSpec {
            name: pin.qemu_package.clone(),
            spec: qemu.clone(),
        },
        PkgSpec {
            name: pin.data_package.clone(),
            spec: data,
        },
    ];
    let mut seen: BTreeSet<String> = pin.not_libraries.iter().cloned().collect();
    seen.insert(pin.qemu_package.clone());
    let mut queue: VecDeque<String> = VecDeque::new();
    let deps = |p: &BTreeMap<String, String>| {
        ["Pre-Depends", "Depends"]
            .iter()
            .filter_map(|f| p.get(*f))
            .flat_map(|v| depends_names(v))
            .collect::<Vec<_>>()
    };
    for d in deps(q) {
        if seen.insert(d.clone()) {
            queue.push_back(d);
        }
    }
    // One apt-cache call per level of the dependency graph.
    while !queue.is_empty() {
        let level: Vec<String> = queue.drain(..).collect();
        let specs: Vec<String> = level.iter().map(|n| format!("{n}:{}", pin.arch)).collect();
        for p in apt_show(&specs)? {
            let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
                continue;
            };
            if p.get("Section").map(String::as_str) != Some(LIBRARY_SECTION) {
                continue;
            }
            set.push(PkgSpec {
                name: name.clone(),
                spec: format!("{name}:{}={version}", pin.arch),
            });
            for d in deps(&p) {
                if seen.insert(d.clone()) {
                    queue.push_back(d);
                }
            }
        }
    }
    set.sort();
    set.dedup();
    Ok(set)
}

fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    Ok(hex::encode(Sha256::digest(&data)))
}

/// Downloads what is not in `debs/` yet and checks every file against apt's checksum.
/// The download set with the file name and SHA-256 apt expects for each package.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Plan {
    pub specs: Vec<PkgSpec>,
    /// (file name, SHA-256), in apt's order.
    pub files: Vec<(String, String)>,
}

/// What apt would download for `specs`, without downloading.
fn locate(specs: &[PkgSpec]) -> Result<Vec<(String, String)>, ImageError> {
    let names: Vec<&str> = specs.iter().map(|s| s.spec.as_str()).collect();
    // `--print-uris` lines: 'URI' FILE SIZE SHA256:HEX. Only FILE and HEX are kept (the URI
    // names the configured mirror, which stays in apt's configuration).
    let listing = run(Command::new("apt-get")
        .args(["download", "--print-uris"])
        .args(&names))?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for l in listing.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, file, _, sum] = f.as_slice() {
            if let Some(hex) = sum.strip_prefix("SHA256:") {
                wanted.push((file.to_string(), hex.to_lowercase()));
            }
        }
    }
    if wanted.len() != specs.len() {
        let have: Vec<&str> = wanted.iter().map(|w| w.0.as_str()).collect();
        let missing: Vec<&str> = specs
            .iter()
            .filter(|s| !have.iter().any(|f| f.starts_with(&format!("{}_", s.name))))
            .map(|s| s.spec.as_str())
            .collect();
        return Err(NestedError::NoPackage {
            spec: missing.join(" "),
        }
        .into());
    }
    Ok(wanted)
}

/// Size and mtime of every file in apt's package lists: changes whenever `apt-get update`
/// brings new lists, which is when a resolution may change.
fn apt_lists_fingerprint(k: &mut KeyBuilder) {
    let dir = Path::new("/var/lib/apt/lists");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            let mtime = md
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some(format!(
                "{:?} {} {}",
                e.file_name(),
                md.len(),
                mtime.as_nanos()
            ))
        })
        .collect();
    v.sort();
    k.str("apt-lists", &v.join("\n"));
}

/// `resolve` + `locate`, cached per pin and apt lists (apt-cache takes seconds per call).
pub fn plan(pin: &Pin, pin_text: &str) -> Result<Plan, ImageError> {
    let mut k = KeyBuilder::new("nested-plan");
    k.str("pin", pin_text);
    apt_lists_fingerprint(&mut k);
    let path = cache::dir("nested")?.join(format!("plan-{}.json", k.short()));
    if let Some(p) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Plan>(&b).ok())
    {
        return Ok(p);
    }
    let specs = resolve(pin)?;
    let files = locate(&specs)?;
    let plan = Plan { specs, files };
    if let Ok(j) = serde_json::to_vec_pretty(&plan) {
        let tmp = super::tmp_path(&path);
        if std::fs::write(&tmp, j).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(plan)
}

/// Downloads what is not in `debs/` yet and checks every file against apt's checksum.
pub fn download(plan: &Plan, report: &mut NestedReport) -> Result<Vec<Deb>, ImageError> {
    let dir = cache::dir("nested")?.join("debs");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let specs = &plan.specs;
    let wanted = &plan.files;
    // apt-get lists files in its own order; a file is `<package>_<version>_<arch>.deb`.
    let absent: BTreeSet<&str> = wanted
        .iter()
        .filter(|(file, _)| !dir.join(file).exists())
        .map(|(file, _)| file.split('_').next().unwrap_or(file))
        .collect();
    let missing: Vec<&str> = specs
        .iter()
        .filter(|s| absent.contains(s.name.as_str()))
        .map(|s| s.spec.as_str())
        .collect();
    if !missing.is_empty() {
        // A separate directory, so an interrupted download never looks like a cached file.
        let incoming = dir.join(".incoming");
        let _ = std::fs::remove_dir_all(&incoming);
        std::fs::create_dir_all(&incoming).map_err(io_err(&incoming))?;
        run(Command::new("apt-get")
            .current_dir(&incoming)
            .arg("download")
            .args(&missing))?;
        for e in std::fs::read_dir(&incoming)
            .map_err(io_err(&incoming))?
            .flatten()
        {
            let to = dir.join(e.file_name());
            std::fs::rename(e.path(), &to).map_err(io_err(&to))?;
        }
        report.downloaded = missing.len();
    }
    let mut debs = Vec::new();
    for (file, want) in wanted {
        let path = dir.join(file);
        let got = sha256_file(&path)?;
        if &got != want {
            let _ = std::fs::remove_file(&path);
            return Err(NestedError::Checksum {
                file: file.clone(),
                got,
                want: want.clone(),
            }
            .into());
        }
        let package = file.split('_').next().unwrap_or(file).to_string();
        debs.push(Deb {
            package,
            path,
            sha256: got,
        });
    }
    debs.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(debs)
}

/// Every package extracted into one tree (cached by the packages' checksums).
fn extract(debs: &[Deb]) -> Result<PathBuf, ImageError> {
    let mut k = KeyBuilder::new("nested-root");
    for d in debs {
        k.str(&d.package, &d.sha256);
    }
    let root = cache::dir("nested")?.join(format!("root-{}", k.short()));
    if root.exists() {
        return Ok(root);
    }
    let tmp = super::tmp_path(&root);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    for d in debs {
        run(Command::new("dpkg-deb").arg("-x").arg(&d.path).arg(&tmp))?;
    }
    super::publish(&tmp, &root)?;
    Ok(root)
}

/// Follows symlinks of `rel` inside `root` (absolute targets are taken relative to `root`).
fn real_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut p = root.join(rel.trim_start_matches('/'));
    for _ in 0..40 {
        let md = std::fs::symlink_metadata(&p).ok()?;
        if !md.file_type().is_symlink() {
            return md.is_file().then_some(p);
        }
        let t = std::fs::read_link(&p).ok()?;
        p = if t.is_absolute() {
            root.join(t.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(t)
        };
    }
    None
}

struct ElfInfo {
    needed: Vec<String>,
    interpreter: Option<String>,
}

fn elf_info(path: &Path) -> Result<ElfInfo, ImageError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| NestedError::Elf {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    if elf.header.e_machine != goblin::elf::header::EM_S390 || !elf.is_64 {
        return Err(NestedError::Elf {
            path: path.to_path_buf(),
            why: format!(
                "not a 64-bit s390x ELF (e_machine {})",
                elf.header.e_machine
            ),
        }
        .into());
    }
    Ok(ElfInfo {
        needed: elf
            .libraries
            .iter()
            .map(|s| s.trim_end_matches(char::from(0)).to_string())
            .collect(),
        interpreter: elf
            .interpreter
            .map(|s| s.trim_end_matches(char::from(0)).to_string()),
    })
}

/// One file of the image: where it goes in the guest and where its bytes come from.
#[derive(Debug, Clone)]
pub struct Placed {
    pub guest: String,
    pub source: PathBuf,
}

/// The binary, its dynamic loader and the recursive `DT_NEEDED` closure, each soname placed
/// under the directory it was found in.
pub fn closure(root: &Path, pin: &Pin, packages: &[String]) -> Result<Vec<Placed>, ImageError> {
    let bin = real_in_root(root, &pin.qemu_binary).ok_or_else(|| NestedError::MissingFile {
        path: pin.qemu_binary.clone(),
    })?;
    let mut placed = vec![Placed {
        guest: pin.qemu_binary.clone(),
        source: bin.clone(),
    }];
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(String, PathBuf)> = VecDeque::from([(pin.qemu_binary.clone(), bin)]);
    while let Some((name, path)) = queue.pop_front() {
        let info = elf_info(&path)?;
        if let Some(interp) = info.interpreter {
            if done.insert(interp.clone()) {
                let src =
                    real_in_root(root, &interp).ok_or_else(|| NestedError::MissingSoname {
                        soname: interp.clone(),
                        needed_by: name.clone(),
                        packages: packages.join(" "),
                        dirs: "/".into(),
                    })?;
                placed.push(Placed {
                    guest: interp.trim_start_matches('/').to_string(),
                    source: src,
                });
            }
        }
        for so in info.needed {
            if !done.insert(so.clone()) {
                continue;
            }
            let found = LIB_DIRS.iter().find_map(|d| {
                let rel = format!("{d}/{so}");
                real_in_root(root, &rel).map(|src| (rel, src))
            });
            let Some((rel, src)) = found else {
                return Err(NestedError::MissingSoname {
                    soname: so,
                    needed_by: name,
                    packages: packages.join(" "),
                    dirs: LIB_DIRS.join(", "),
                }
                .into());
            };
            placed.push(Placed {
                guest: rel,
                source: src.clone(),
            });
            queue.push_back((so, src));
        }
    }
    for f in &pin.data_files {
        let src =
            real_in_root(root, f).ok_or_else(|| NestedError::MissingFile { path: f.clone() })?;
        placed.push(Placed {
            guest: f.clone(),
            source: src,
        });
    }
    Ok(placed)
}

/// Directory entries for every ancestor of `files` that the base layout does not have,
/// parents first (the kernel's initramfs unpacker does not create them).
fn parent_dirs(base: &[Entry], files: &[Placed]) -> Vec<Entry> {
    let have: BTreeSet<String> = base
        .iter()
        .filter_map(|e| match e {
            Entry::Dir { path } => Some(path.clone()),
            _ => None,
        })
        .collect();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for f in files {
        let mut p = Path::new(&f.guest).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.display().to_string());
            p = d.parent();
        }
    }
    // BTreeSet order puts "usr" before "usr/bin": parents first.
    dirs.into_iter()
        .filter(|d| !have.contains(d))
        .map(|path| Entry::Dir { path })
        .collect()
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
        let mut entries = initramfs::base_layout(agent_bytes, bb_bytes);
        entries.extend(parent_dirs(&entries, &files));
        for f in &files {
            let data = std::fs::read(&f.source).map_err(io_err(&f.source))?;
            entries.push(Entry::File {
                path: f.guest.clone(),
                mode: 0o755,
                data,
            });
        }
        let tmp = super::tmp_path(&path);
        let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let w = initramfs::write(std::io::BufWriter::new(file), &entries).map_err(io_err(&tmp))?;
        w.into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&tmp))?;
        super::publish(&tmp, &path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_drops_versions_alternatives_and_arch_qualifiers() {
        let v = "libaio1 (>= 0.3.93), libc6 (>= 2.34), debconf | debconf-2.0, libgcc-s1:any, qemu-system-data (>> 1:10.0.2+ds~)";
        assert_eq!(
            depends_names(v),
            [
                "libaio1",
                "libc6",
                "debconf",
                "libgcc-s1",
                "qemu-system-data"
            ]
        );
    }

    #[test]
    fn paragraphs_split_on_blank_lines_and_join_continuations() {
        let t = "Package: a\nVersion: 1\nDepends: x,\n y\n\nPackage: b\nSection: libs\n";
        let p = paragraphs(t);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["Depends"], "x, y");
        assert_eq!(p[1]["Section"], "libs");
    }

    #[test]
    fn parent_dirs_come_parents_first_and_skip_base_ones() {
        let base = vec![Entry::Dir { path: "bin".into() }];
        let files = vec![
            Placed {
                guest: "usr/lib/s390x-linux-gnu/libz.so.1".into(),
                source: PathBuf::new(),
            },
            Placed {
                guest: "bin/x".into(),
                source: PathBuf::new(),
            },
        ];
        let d: Vec<String> = parent_dirs(&base, &files)
            .into_iter()
            .map(|e| match e {
                Entry::Dir { path } => path,
                _ => String::new(),
            })
            .collect();
        assert_eq!(d, ["usr", "usr/lib", "usr/lib/s390x-linux-gnu"]);
    }

    #[test]
    fn pin_file_parses() {
        let (pin, _) = Pin::load().unwrap();
        assert_eq!(pin.arch, "s390x");
        assert!(pin.data_files.iter().any(|f| f.ends_with("s390-ccw.img")));
    }
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
