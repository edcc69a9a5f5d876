//! Where a cover kernel can report coverage from: every call of `__sanitizer_cov_trace_pc`
//! the compiler put into vmlinux. The set of lines those calls belong to is the "total" of a
//! line-coverage report: a line without one is not instrumented (declarations, code folded
//! into a neighbouring block), so it can be neither covered nor missed.
//!
//! On s390 GCC emits the call as `brasl %r14,__sanitizer_cov_trace_pc` (RIL-b, 6 bytes:
//! `c0 e5` and a signed 32-bit halfword offset), and KCOV records the return address, the
//! byte after it: a reported PC minus [`CALL_LEN`] is its call site.

use std::collections::BTreeSet;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};

use super::CoverError;
use crate::kernel::KernelRecord;
use crate::symbolize::Symbolizer;

/// A cover kernel opened for placing its KCOV PCs: its build record, vmlinux's symbolizer,
/// every call site of [`CALLEE`] and the link address of `_stext` (PCs are offsets from it).
pub struct CoverKernel {
    pub record: KernelRecord,
    pub sym: Symbolizer,
    pub call_sites: BTreeSet<u64>,
    pub stext: u64,
}

impl CoverKernel {
    /// The cover kernel `bzimage`, with the vmlinux its build record names.
    pub fn open(bzimage: &Path) -> Result<CoverKernel, CoverError> {
        let record = KernelRecord::of_bzimage(bzimage);
        let vmlinux = record
            .vmlinux
            .clone()
            .ok_or_else(|| CoverError::NoVmlinux {
                kernel: bzimage.to_path_buf(),
            })?;
        let sym = Symbolizer::open(&vmlinux, record.src.as_deref())?;
        let call_sites = call_sites(&vmlinux)?;
        let stext = sym
            .symbols()
            .lookup("_stext", None)
            .map(|(s, _)| s.addr)
            .ok_or_else(|| CoverError::NoStext {
                path: vmlinux.clone(),
            })?;
        Ok(CoverKernel {
            record,
            sym,
            call_sites,
            stext,
        })
    }

    /// The file (as the line table names it, with `/./` folded: headers included as
    /// "./trace.h" are named so) and line of an address.
    pub fn line(&self, site: u64) -> Option<(String, u32)> {
        self.sym
            .line(site)
            .map(|(file, line)| (file.replace("/./", "/"), line))
    }
}

pub const CALLEE: &str = "__sanitizer_cov_trace_pc";
/// Length of the `brasl` that calls [`CALLEE`]: KCOV's PC is the call site plus this.
pub const CALL_LEN: u64 = 6;

/// The link-time addresses of every call of [`CALLEE`] in `vmlinux`'s code sections.
pub fn call_sites(vmlinux: &Path) -> Result<BTreeSet<u64>, CoverError> {
    let data = std::fs::read(vmlinux).map_err(|source| CoverError::Read {
        path: vmlinux.to_path_buf(),
        source,
    })?;
    let elf = object::File::parse(&*data).map_err(|e| CoverError::Elf {
        path: vmlinux.to_path_buf(),
        message: e.to_string(),
    })?;
    let callee = elf
        .symbols()
        .find(|s| s.name() == Ok(CALLEE))
        .map(|s| s.address())
        .ok_or_else(|| CoverError::NotCover {
            path: vmlinux.to_path_buf(),
        })?;
    let mut sites = BTreeSet::new();
    for sec in elf.sections().filter(|s| s.kind() == SectionKind::Text) {
        let Ok(bytes) = sec.data() else { continue };
        sites.extend(brasl_r14_to(bytes, sec.address(), callee));
    }
    Ok(sites)
}

/// Addresses of `brasl %r14,target` in `code` loaded at `base`. Instructions are halfword
/// aligned and 2, 4 or 6 bytes long; a scan of every halfword could in principle read the
/// pattern out of another instruction's operands, but then the 32-bit offset would also have
/// to land exactly on `target`.
fn brasl_r14_to(code: &[u8], base: u64, target: u64) -> impl Iterator<Item = u64> + '_ {
    (0..code.len().saturating_sub(5))
        .step_by(2)
        .filter(move |&i| {
            if code[i] != 0xc0 || code[i + 1] != 0xe5 {
                return false;
            }
            let off = i32::from_be_bytes([code[i + 2], code[i + 3], code[i + 4], code[i + 5]]);
            let at = base + i as u64;
            at.wrapping_add_signed(2 * i64::from(off)) == target
        })
        .map(move |i| base + i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_calls_to_the_target_and_nothing_else() {
        let base = 0x1000;
        let target = 0x2000u64;
        let mut code = vec![0x07, 0x07]; // nopr
                                         // brasl %r14 at 0x1002 -> 0x2000: offset (0x2000-0x1002)/2 = 0x7ff
        code.extend([0xc0, 0xe5, 0x00, 0x00, 0x07, 0xff]);
        // brasl %r14 to elsewhere
        code.extend([0xc0, 0xe5, 0x00, 0x00, 0x00, 0x10]);
        // brasl %r1 (c0 15) to the target: another register, not the call KCOV emits
        code.extend([0xc0, 0x15, 0x00, 0x00, 0x07, 0xf9]);
        // a backwards call at 0x2010 -> 0x2000: offset -8
        let mut tail = vec![0u8; 0x2010 - base as usize - code.len()];
        code.append(&mut tail);
        code.extend([0xc0, 0xe5, 0xff, 0xff, 0xff, 0xf8]);
        let found: Vec<u64> = brasl_r14_to(&code, base, target).collect();
        assert_eq!(found, [0x1002, 0x2010]);
    }
}
