//! The ELF symbol table of a vmlinux: `func+off` to a link-time address, and back.
//!
//! Call traces name functions, and static functions share names across files (`fsm_nop`
//! exists once per driver that wants one), so a lookup by name takes the printed size too.

use std::collections::HashMap;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};

use super::SymbolizeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sym {
    pub addr: u64,
    pub size: u64,
}

/// Function symbols by name and by address.
#[derive(Debug, Default)]
pub struct Symbols {
    by_name: HashMap<String, Vec<Sym>>,
    /// (addr, size, name), sorted by address.
    sorted: Vec<(u64, u64, String)>,
}

impl Symbols {
    pub fn parse(data: &[u8]) -> Result<Symbols, SymbolizeError> {
        let file = object::File::parse(data).map_err(|e| SymbolizeError::Elf(e.to_string()))?;
        let mut s = Symbols::default();
        for sym in file.symbols() {
            // Data symbols never appear in a call trace; keeping them out makes the
            // address lookup land on the function an address belongs to.
            // Assembler entry points (`system_call`) are untyped; keep them when they are
            // in a code section.
            let in_text = sym
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .is_some_and(|sec| sec.kind() == SectionKind::Text);
            let code = match sym.kind() {
                SymbolKind::Text => true,
                SymbolKind::Unknown => in_text,
                _ => false,
            };
            if !code {
                continue;
            }
            let Ok(name) = sym.name() else { continue };
            if name.is_empty() {
                continue;
            }
            let entry = Sym {
                addr: sym.address(),
                size: sym.size(),
            };
            s.by_name.entry(name.to_string()).or_default().push(entry);
            s.sorted.push((entry.addr, entry.size, name.to_string()));
        }
        s.sorted.sort();
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The definition of `name` whose size best matches the trace's `/size` (kallsyms prints
    /// the distance to the next symbol, i.e. the ELF size plus alignment padding), and the
    /// number of candidates it was chosen from.
    pub fn lookup(&self, name: &str, size: Option<u64>) -> Option<(Sym, usize)> {
        let all = self.by_name.get(name)?;
        let pick = match size {
            Some(sz) => all
                .iter()
                .min_by_key(|s| (s.size > sz, sz.abs_diff(s.size))),
            None => all.first(),
        }?;
        Some((*pick, all.len()))
    }

    /// The function containing a link-time address, with the offset into it.
    pub fn containing(&self, addr: u64) -> Option<(&str, u64, u64)> {
        let i = self.sorted.partition_point(|(a, _, _)| *a <= addr);
        let (a, size, name) = self.sorted.get(i.checked_sub(1)?)?;
        // Zero-sized entries (assembler labels) own everything up to the next symbol.
        let end = if *size > 0 {
            a + size
        } else {
            self.sorted.get(i).map(|n| n.0).unwrap_or(u64::MAX)
        };
        (addr < end).then_some((name.as_str(), addr - a, *size))
    }
}
