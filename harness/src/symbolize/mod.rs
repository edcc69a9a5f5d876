//! Decoding kernel call traces to `file:line` (with inlined frames) from a build's vmlinux:
//! what `scripts/decode_stacktrace.sh` does, in-process, for every frame of a crash report.
//!
//! s390 traces print `func+off/size` next to the runtime address. The symbol form survives
//! KASLR, so it is what frames are resolved by (ELF symbol table + offset); raw addresses
//! (`[<0000000000000002>] 0x2`) are moved to link time with the slide measured on the
//! frames that have both forms.

pub mod gdb;
mod lines;
pub mod sampler;
mod symbols;
mod trace;

pub use lines::Location;
pub use symbols::{Sym, Symbols};
pub use trace::{decode, render, DecodedFrame, DecodedTrace, FrameRole};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SymbolizeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ELF file with a symbol table: {0}")]
    Elf(String),
    #[error("{path}: no function symbols (a stripped vmlinux cannot decode traces)")]
    NoSymbols { path: PathBuf },
    #[error("{path}: cannot read its DWARF: {message}")]
    Dwarf { path: PathBuf, message: String },
}

/// A vmlinux opened for decoding.
pub struct Symbolizer {
    pub vmlinux: PathBuf,
    symbols: Symbols,
    lines: lines::Lines,
    has_lines: bool,
}

impl Symbolizer {
    /// Opens `vmlinux`; `src` (the tree it was built from) is cut off file names.
    pub fn open(vmlinux: &Path, src: Option<&Path>) -> Result<Symbolizer, SymbolizeError> {
        let data = std::fs::read(vmlinux).map_err(|source| SymbolizeError::Read {
            path: vmlinux.to_path_buf(),
            source,
        })?;
        let symbols = Symbols::parse(&data)?;
        if symbols.is_empty() {
            return Err(SymbolizeError::NoSymbols {
                path: vmlinux.to_path_buf(),
            });
        }
        let has_lines = has_line_tables(&data);
        drop(data);
        let mut strip: Vec<PathBuf> = Vec::new();
        if let Some(s) = src {
            strip.push(s.to_path_buf());
            if let Ok(c) = s.canonicalize() {
                strip.push(c);
            }
        }
        let lines = lines::Lines::open(vmlinux, strip)?;
        Ok(Symbolizer {
            vmlinux: vmlinux.to_path_buf(),
            symbols,
            lines,
            has_lines,
        })
    }

    /// Whether vmlinux carries DWARF line tables (the fast profile has them since
    /// `CONFIG_DEBUG_INFO_DWARF5` + `REDUCED`; a kernel built without debug info only
    /// resolves to function names).
    pub fn has_lines(&self) -> bool {
        self.has_lines
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// The innermost `file:line` of a link-time address (None without line tables).
    pub fn line(&self, addr: u64) -> Option<(String, u32)> {
        self.has_lines.then(|| self.lines.line(addr)).flatten()
    }

    /// Source positions of a link-time address (empty without line tables).
    pub fn locations(&self, addr: u64) -> Vec<Location> {
        if !self.has_lines {
            return Vec::new();
        }
        self.lines.locations(addr)
    }
}

fn has_line_tables(data: &[u8]) -> bool {
    use object::{Object, ObjectSection};
    object::File::parse(data)
        .ok()
        .and_then(|f| f.section_by_name(".debug_line").map(|s| s.size() > 0))
        .unwrap_or(false)
}
