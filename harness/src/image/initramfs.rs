//! Writes the guest's initramfs (newc cpio, uncompressed: under TCG the kernel's gzip
//! decompression costs more boot time than reading a few extra megabytes).

use std::io::Write;

use cpio::newc::{Builder, ModeFileType};

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir {
        path: String,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    CharDev {
        path: String,
        major: u32,
        minor: u32,
        mode: u32,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::CharDev { path, .. } => path,
        }
    }
}

/// busybox applets the image links, for the shell (`ccwrig shell`) and `exec` steps.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "cat", "chmod", "cp", "cut", "date", "dd", "dmesg", "echo", "env", "false",
    "find", "free", "grep", "head", "hexdump", "kill", "less", "ln", "ls", "mkdir", "mknod",
    "mount", "mv", "od", "pidof", "poweroff", "ps", "readlink", "reboot", "rm", "sed", "seq",
    "setsid", "sleep", "sort", "stat", "sync", "tail", "tee", "test", "timeout", "top", "touch",
    "tr", "true", "umount", "uname", "uniq", "vi", "watch", "wc", "xargs", "awk", "cttyhack",
    "stty", "uptime",
];

/// The layout every ccwrig image has: the agent as /init, busybox with its applets, the
/// device nodes the kernel needs before devtmpfs is mounted.
pub fn base_layout(agent: Vec<u8>, busybox: Vec<u8>) -> Vec<Entry> {
    let mut v: Vec<Entry> = [
        "bin", "sbin", "dev", "proc", "sys", "tmp", "run", "root", "etc", "mnt",
    ]
    .iter()
    .map(|d| Entry::Dir {
        path: d.to_string(),
    })
    .collect();
    v.push(Entry::CharDev {
        path: "dev/console".into(),
        major: 5,
        minor: 1,
        mode: 0o600,
    });
    v.push(Entry::CharDev {
        path: "dev/null".into(),
        major: 1,
        minor: 3,
        mode: 0o666,
    });
    v.push(Entry::File {
        path: "init".into(),
        mode: 0o755,
        data: agent,
    });
    v.push(Entry::File {
        path: "bin/busybox".into(),
        mode: 0o755,
        data: busybox,
    });
    for a in BUSYBOX_APPLETS {
        let dir = if matches!(*a, "poweroff" | "reboot") {
            "sbin"
        } else {
            "bin"
        };
        v.push(Entry::Symlink {
            path: format!("{dir}/{a}"),
            target: "/bin/busybox".into(),
        });
    }
    v
}

/// Writes `entries` as a newc archive.
pub fn write<W: Write>(mut out: W, entries: &[Entry]) -> std::io::Result<W> {
    for (i, e) in entries.iter().enumerate() {
        // Inode numbers only need to be distinct; 0 confuses some extractors.
        let b = Builder::new(e.path()).ino(i as u32 + 1).uid(0).gid(0);
        out = match e {
            Entry::Dir { .. } => b
                .mode(0o755)
                .set_mode_file_type(ModeFileType::Directory)
                .nlink(2)
                .write(out, 0)
                .finish()?,
            Entry::File { mode, data, .. } => {
                let size = u32::try_from(data.len())
                    .map_err(|_| std::io::Error::other("file over 4 GiB"))?;
                let mut w = b
                    .mode(*mode)
                    .set_mode_file_type(ModeFileType::Regular)
                    .write(out, size);
                w.write_all(data)?;
                w.finish()?
            }
            Entry::Symlink { target, .. } => {
                let mut w = b
                    .mode(0o777)
                    .set_mode_file_type(ModeFileType::Symlink)
                    .write(out, target.len() as u32);
                w.write_all(target.as_bytes())?;
                w.finish()?
            }
            Entry::CharDev {
                major, minor, mode, ..
            } => b
                .mode(*mode)
                .set_mode_file_type(ModeFileType::Char)
                .rdev_major(*major)
                .rdev_minor(*minor)
                .write(out, 0)
                .finish()?,
        };
    }
    cpio::newc::trailer(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_reads_back_with_types_and_contents() {
        let entries = base_layout(b"AGENT".to_vec(), b"BB".to_vec());
        let bytes = write(Vec::new(), &entries).unwrap();
        let mut cur = std::io::Cursor::new(bytes);
        let mut seen = Vec::new();
        loop {
            let r = cpio::newc::Reader::new(&mut cur).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            seen.push((
                e.name().to_string(),
                e.mode() & 0o170000,
                e.rdev_major(),
                e.rdev_minor(),
                e.file_size(),
            ));
            r.finish().unwrap();
        }
        let find = |n: &str| seen.iter().find(|s| s.0 == n).cloned().unwrap();
        assert_eq!(find("init").1, 0o100000);
        assert_eq!(find("init").4, 5);
        assert_eq!(
            find("dev/console"),
            ("dev/console".into(), 0o020000, 5, 1, 0)
        );
        assert_eq!(find("dev/null").2, 1);
        assert_eq!(find("bin/sh").1, 0o120000);
        assert_eq!(find("sbin/poweroff").1, 0o120000);
        assert_eq!(find("proc").1, 0o040000);
        assert_eq!(seen.len(), entries.len());
    }
}
