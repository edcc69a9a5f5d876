//! Line tables: a link-time address to `file:line`, with the chain of inlined functions,
//! from the DWARF in vmlinux (addr2line/gimli).

use std::path::{Path, PathBuf};

use super::SymbolizeError;

/// One source position of an address: the innermost inlined function comes first, the
/// function the address's code was emitted in comes last.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// Whether this position is in a function inlined into the next one.
    pub inlined: bool,
}

impl Location {
    /// `drivers/s390/cio/vfio_ccw_ops.c:591`, or `??:?` when DWARF has no line for it.
    pub fn file_line(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => format!("{f}:?"),
            _ => "??:?".into(),
        }
    }
}

pub struct Lines {
    loader: addr2line::Loader,
    /// Source-tree prefixes removed from file names, so the report shows tree-relative paths
    /// as kernel developers paste them (`drivers/s390/cio/...`).
    strip: Vec<PathBuf>,
}

impl Lines {
    pub fn open(vmlinux: &Path, strip: Vec<PathBuf>) -> Result<Lines, SymbolizeError> {
        let loader = addr2line::Loader::new(vmlinux).map_err(|e| SymbolizeError::Dwarf {
            path: vmlinux.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Lines { loader, strip })
    }

    pub fn locations(&self, addr: u64) -> Vec<Location> {
        let mut out = Vec::new();
        let Ok(mut frames) = self.loader.find_frames(addr) else {
            return out;
        };
        while let Ok(Some(f)) = frames.next() {
            let function = f
                .function
                .as_ref()
                .and_then(|n| n.raw_name().ok().map(|s| s.into_owned()));
            let (file, line, column) = match f.location {
                Some(l) => (l.file.map(|p| self.shorten(p)), l.line, l.column),
                None => (None, None, None),
            };
            out.push(Location {
                function,
                file,
                line,
                column,
                inlined: true,
            });
        }
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        out
    }

    /// The innermost `file:line` of an address (the line-table row, without walking the
    /// inlined-function chain: what a line-coverage report needs, for many addresses).
    pub fn line(&self, addr: u64) -> Option<(String, u32)> {
        let l = self.loader.find_location(addr).ok()??;
        Some((self.shorten(l.file?), l.line?))
    }

    fn shorten(&self, file: &str) -> String {
        let p = Path::new(file);
        for prefix in &self.strip {
            if let Ok(rel) = p.strip_prefix(prefix) {
                return rel.to_string_lossy().into_owned();
            }
        }
        // O= builds record some paths relative to the object directory (`../src/...`) or
        // under a copy of the tree: the kernel's own top-level directories mark where the
        // tree-relative part begins.
        const TOP: [&str; 13] = [
            "drivers", "arch", "fs", "kernel", "include", "mm", "lib", "net", "block", "init",
            "security", "virt", "io_uring",
        ];
        let parts: Vec<&str> = file.split('/').collect();
        if let Some(i) = parts.iter().position(|c| TOP.contains(c)) {
            if i > 0 {
                return parts[i..].join("/");
            }
        }
        file.to_string()
    }
}
