//! What the QEMU binary needs to run: its ELF `DT_NEEDED` entries and dynamic loader,
//! followed recursively through the extracted packages (a missing soname is an error naming
//! it), plus the pinned data files.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use super::{NestedError, Pin};
use crate::image::{io_err, ImageError};

/// Where library sonames are looked up inside the extracted packages (Debian multiarch first).
const LIB_DIRS: &[&str] = &[
    "lib/s390x-linux-gnu",
    "usr/lib/s390x-linux-gnu",
    "lib",
    "usr/lib",
];

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
