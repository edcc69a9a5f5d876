//! The nested initramfs itself: the base layout, the directories it lacks, and every placed
//! file, written as one uncompressed cpio archive.

use std::collections::BTreeSet;
use std::path::Path;

use super::Placed;
use crate::image::initramfs::{self, Entry};
use crate::image::{io_err, publish, tmp_path, ImageError};

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

/// Writes the image to `path`: the base layout (agent, busybox) and `files`.
pub(super) fn write(
    path: &Path,
    agent: Vec<u8>,
    busybox: Vec<u8>,
    files: &[Placed],
) -> Result<(), ImageError> {
    let mut entries = initramfs::base_layout(agent, busybox);
    entries.extend(parent_dirs(&entries, files));
    for f in files {
        let data = std::fs::read(&f.source).map_err(io_err(&f.source))?;
        entries.push(Entry::File {
            path: f.guest.clone(),
            mode: 0o755,
            data,
        });
    }
    let tmp = tmp_path(path);
    let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let w = initramfs::write(std::io::BufWriter::new(file), &entries).map_err(io_err(&tmp))?;
    w.into_inner()
        .map_err(|e| io_err(&tmp)(e.into_error()))?
        .sync_all()
        .map_err(io_err(&tmp))?;
    publish(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
}
