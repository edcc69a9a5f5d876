//! A channel program `io` can start instead of its default SENSE ID: CCWs with their flags,
//! counts and data references (a buffer, an indirect-data-address list, a TIC target, an
//! address nothing is mapped at), the ORB's options and the function the I/O region's SCSW
//! names. [`ChannelProgram::encode`] lays it out in a handle's DMA buffer; the agent and the
//! C reproducer both write exactly those bytes, so the two cannot disagree.
//!
//! vfio-ccw translates every program before the device sees it (`cp_init` / `cp_prefetch`:
//! chain lengths, TIC targets, format-0 conversion, IDAL building, page pinning), which is why
//! the shapes here matter more than the commands.

use serde::{Deserialize, Serialize};

/// Where a program lives inside the DMA buffer: the CCWs, then the IDALs right after them, one
/// image starting at `CCW_OFF`; the data the CCWs move lies in `DATA_OFF..DATA_OFF+DATA_LEN`.
/// Kept below `0x8_0000`, the page `io_stall` hands to a userfaultfd.
pub const CCW_OFF: u32 = 0x1000;
/// At most this many CCWs (one more than vfio-ccw's 256 per chain, so the limit is reachable).
pub const MAX_CCWS: usize = 320;
pub const IDAL_OFF: u32 = CCW_OFF + (MAX_CCWS as u32) * 8;
/// At most this many IDAW bytes in all.
pub const IDAL_LEN: u32 = 0x1000;
pub const DATA_OFF: u32 = 0x1_0000;
pub const DATA_LEN: u32 = 0x6_0000;

/// CCW flag bits (byte 1 of a format-1 CCW).
const FLAG_CD: u8 = 0x80;
const FLAG_CC: u8 = 0x40;
const FLAG_SLI: u8 = 0x20;
const FLAG_SKIP: u8 = 0x10;
const FLAG_PCI: u8 = 0x08;
const FLAG_IDA: u8 = 0x04;
const FLAG_SUSPEND: u8 = 0x02;

/// ORB word 1 bits (`struct cmd_orb`; `b` is the transport-mode ORB's bit at the same place
/// as the command ORB's reserved bit 13).
const ORB_SUSPEND: u32 = 1 << 27;
const ORB_FORMAT1: u32 = 1 << 23;
const ORB_PREFETCH: u32 = 1 << 22;
const ORB_TRANSPORT: u32 = 1 << 18;
const ORB_C64: u32 = 1 << 17;
const ORB_I2K: u32 = 1 << 16;

/// SCSW word 0 function-control bits for the I/O region.
const FCTL_START: u32 = 0x4000;
const FCTL_HALT: u32 = 0x2000;
const FCTL_CLEAR: u32 = 0x1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelProgram {
    #[serde(default, skip_serializing_if = "Orb::is_default")]
    pub orb: Orb,
    /// The function the I/O region's SCSW asks for: vfio-ccw starts programs only, and
    /// refuses halt and clear there (they go through the async region).
    #[serde(default, skip_serializing_if = "IoFunction::is_start")]
    pub function: IoFunction,
    pub ccws: Vec<Ccw>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Orb {
    /// Format-0 CCWs (24-bit data addresses); vfio-ccw converts them to format 1.
    #[serde(default)]
    pub format0: bool,
    #[serde(default = "yes")]
    pub prefetch: bool,
    /// Format-2 (64-bit) IDAWs; without it IDAWs are format 1 (31-bit, 2K blocks).
    #[serde(default)]
    pub c64: bool,
    /// Format-2 IDAWs that each cover 2K.
    #[serde(default)]
    pub i2k: bool,
    /// Suspend control: a CCW with the suspend flag then suspends the program.
    #[serde(default)]
    pub suspend: bool,
    /// The transport-mode bit: vfio-ccw refuses such an ORB.
    #[serde(default)]
    pub transport: bool,
    #[serde(default)]
    pub key: u8,
    /// Logical path mask; 0 lets vfio-ccw put the subchannel's own.
    #[serde(default)]
    pub lpm: u8,
}

fn yes() -> bool {
    true
}

impl Default for Orb {
    fn default() -> Self {
        Orb {
            format0: false,
            prefetch: true,
            c64: false,
            i2k: false,
            suspend: false,
            transport: false,
            key: 0,
            lpm: 0,
        }
    }
}

impl Orb {
    fn is_default(&self) -> bool {
        *self == Orb::default()
    }

    pub fn word1(&self) -> u32 {
        let bit = |on: bool, b: u32| if on { b } else { 0 };
        (u32::from(self.key & 0xf) << 28)
            | bit(self.suspend, ORB_SUSPEND)
            | bit(!self.format0, ORB_FORMAT1)
            | bit(self.prefetch, ORB_PREFETCH)
            | bit(self.transport, ORB_TRANSPORT)
            | bit(self.c64, ORB_C64)
            | bit(self.i2k, ORB_I2K)
            | (u32::from(self.lpm) << 8)
    }

    /// The bytes each IDAW covers, as the channel (and `ccw_count_idaws`) reads the ORB.
    fn idaw_block(&self) -> u32 {
        if !self.c64 || self.i2k {
            2048
        } else {
            4096
        }
    }

    fn idaw_size(&self) -> u32 {
        if self.c64 {
            8
        } else {
            4
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoFunction {
    #[default]
    Start,
    Halt,
    Clear,
    /// No function bit at all.
    None,
}

impl IoFunction {
    fn is_start(&self) -> bool {
        *self == IoFunction::Start
    }

    pub fn fctl(self) -> u32 {
        match self {
            IoFunction::Start => FCTL_START,
            IoFunction::Halt => FCTL_HALT,
            IoFunction::Clear => FCTL_CLEAR,
            IoFunction::None => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ccw {
    pub cmd: CcwCmd,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<CcwFlag>,
    #[serde(default)]
    pub count: u16,
    #[serde(default, skip_serializing_if = "DataRef::is_none")]
    pub data: DataRef,
}

/// Commands whose handling differs in vfio-ccw's translation (`ccw_does_data_transfer`, TIC)
/// or in the device's (QEMU's css answers NOP, BASIC SENSE and SENSE ID itself; anything else
/// goes to the virtio-ccw device, which rejects what it does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CcwCmd {
    Write,
    Read,
    Nop,
    Sense,
    Tic,
    ReadBackward,
    SenseId,
}

impl CcwCmd {
    pub fn code(self) -> u8 {
        match self {
            CcwCmd::Write => 0x01,
            CcwCmd::Read => 0x02,
            CcwCmd::Nop => 0x03,
            CcwCmd::Sense => 0x04,
            CcwCmd::Tic => 0x08,
            CcwCmd::ReadBackward => 0x0c,
            CcwCmd::SenseId => 0xe4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CcwFlag {
    /// Data chaining.
    Cd,
    /// Command chaining.
    Cc,
    Sli,
    Skip,
    Pci,
    Suspend,
}

impl CcwFlag {
    fn bit(self) -> u8 {
        match self {
            CcwFlag::Cd => FLAG_CD,
            CcwFlag::Cc => FLAG_CC,
            CcwFlag::Sli => FLAG_SLI,
            CcwFlag::Skip => FLAG_SKIP,
            CcwFlag::Pci => FLAG_PCI,
            CcwFlag::Suspend => FLAG_SUSPEND,
        }
    }
}

/// What a CCW's data address points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DataRef {
    /// Address 0.
    #[default]
    None,
    /// `DATA_OFF + off` of the buffer.
    Buf(u32),
    /// An IDAL (the CCW gets the IDA flag) whose first IDAW is `DATA_OFF + off` and whose
    /// later IDAWs follow it block by block, or every other block with `scatter` (pages that
    /// are not contiguous, so vfio-ccw pins them one by one).
    Idal {
        off: u32,
        #[serde(default)]
        scatter: bool,
    },
    /// The CCW with this index in `ccws` (a TIC's target).
    Ccw(u16),
    /// Just past the end of the DMA buffer, where nothing is mapped.
    Unmapped,
}

impl DataRef {
    fn is_none(&self) -> bool {
        *self == DataRef::None
    }
}

/// A program laid out for the DMA buffer: `image` goes at `CCW_OFF`; the I/O region's ORB
/// gets `orb_word1` and `cpa`, its SCSW word 0 `scsw0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub image: Vec<u8>,
    pub orb_word1: u32,
    pub cpa: u32,
    pub scsw0: u32,
}

impl ChannelProgram {
    /// Why this program cannot be laid out, naming the CCW; `None` when it can.
    pub fn problem(&self) -> Option<String> {
        if self.ccws.is_empty() {
            return Some("a channel program needs at least one CCW".into());
        }
        if self.ccws.len() > MAX_CCWS {
            return Some(format!(
                "{} CCWs, at most {MAX_CCWS} fit the DMA buffer's program area",
                self.ccws.len()
            ));
        }
        if self.orb.key > 15 {
            return Some(format!("orb.key {} is not a 4-bit key", self.orb.key));
        }
        let mut idal = 0u32;
        for (i, c) in self.ccws.iter().enumerate() {
            let at = |what: String| Some(format!("ccws[{i}]: {what}"));
            let bytes = u32::from(c.count).max(1);
            match (c.cmd, c.data) {
                // A TIC only forward: execution then always ends (QEMU runs a virtual
                // subchannel's program synchronously in the vCPU thread, so a loop would
                // freeze the guest, which is not the driver's fault).
                (CcwCmd::Tic, DataRef::Ccw(to))
                    if usize::from(to) <= i || usize::from(to) >= self.ccws.len() =>
                {
                    return at(format!(
                        "a TIC must point forward, at a CCW after it (index {to} of {})",
                        self.ccws.len()
                    ));
                }
                (CcwCmd::Tic, DataRef::Ccw(_)) => {}
                (CcwCmd::Tic, DataRef::Unmapped) => {}
                (CcwCmd::Tic, d) => {
                    return at(format!("a TIC needs data = {{ ccw = N }}, not {d:?}"))
                }
                (_, DataRef::Ccw(_)) => return at("only a TIC points at a CCW".into()),
                (_, DataRef::Buf(off)) if off + bytes > DATA_LEN => {
                    return at(format!(
                        "buf {off} + count {bytes} runs past the data area ({DATA_LEN} bytes)"
                    ))
                }
                (_, DataRef::Idal { off, scatter }) => {
                    let block = self.orb.idaw_block();
                    let n = idaws(off, bytes, block);
                    let span = if scatter { 2 * n * block } else { n * block };
                    if off + span > DATA_LEN {
                        return at(format!(
                            "idal at {off} over {bytes} bytes runs past the data area"
                        ));
                    }
                    idal += n * self.orb.idaw_size();
                }
                _ => {}
            }
        }
        if idal > IDAL_LEN {
            return Some(format!(
                "the IDALs take {idal} bytes, at most {IDAL_LEN} fit"
            ));
        }
        None
    }

    /// Lays the program out for a DMA buffer mapped at `iova` with `len` bytes. Call
    /// [`ChannelProgram::problem`] first: a program it refuses is laid out clamped.
    pub fn encode(&self, iova: u64, len: u64) -> Encoded {
        let base = iova as u32;
        let unmapped = (iova + len) as u32;
        let ccw_at = |i: usize| base + CCW_OFF + 8 * i as u32;
        let block = self.orb.idaw_block();
        let mut image = vec![0u8; 8 * self.ccws.len()];
        let mut idal = Vec::new();
        for (i, c) in self.ccws.iter().enumerate() {
            let mut flags = c.flags.iter().fold(0u8, |f, x| f | x.bit());
            let bytes = u32::from(c.count).max(1);
            let cda = match c.data {
                DataRef::None => 0,
                DataRef::Buf(off) => base + DATA_OFF + off.min(DATA_LEN),
                DataRef::Ccw(to) => ccw_at(usize::from(to)),
                DataRef::Unmapped => unmapped,
                DataRef::Idal { off, scatter } => {
                    flags |= FLAG_IDA;
                    let at = base + IDAL_OFF + idal.len() as u32;
                    let first = base + DATA_OFF + off.min(DATA_LEN);
                    let step = if scatter { 2 * block } else { block };
                    for k in 0..idaws(off, bytes, block) {
                        let a = if k == 0 {
                            first
                        } else {
                            (first & !(block - 1)) + k * step
                        };
                        if self.orb.c64 {
                            idal.extend_from_slice(&u64::from(a).to_be_bytes());
                        } else {
                            idal.extend_from_slice(&a.to_be_bytes());
                        }
                    }
                    at
                }
            };
            let w = if self.orb.format0 {
                ccw0(c.cmd.code(), flags, c.count, cda)
            } else {
                ccw1(c.cmd.code(), flags, c.count, cda)
            };
            image[8 * i..8 * i + 8].copy_from_slice(&w);
        }
        if !idal.is_empty() {
            image.resize((IDAL_OFF - CCW_OFF) as usize, 0);
            image.extend_from_slice(&idal);
        }
        Encoded {
            image,
            orb_word1: self.orb.word1(),
            cpa: ccw_at(0),
            scsw0: self.function.fctl(),
        }
    }
}

/// How many IDAWs `bytes` starting at `off` need with `block`-sized IDAWs (the first covers
/// up to its block's end).
fn idaws(off: u32, bytes: u32, block: u32) -> u32 {
    let start = off % block;
    (start + bytes).div_ceil(block)
}

fn ccw1(cmd: u8, flags: u8, count: u16, cda: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = cmd;
    b[1] = flags;
    b[2..4].copy_from_slice(&count.to_be_bytes());
    b[4..8].copy_from_slice(&cda.to_be_bytes());
    b
}

fn ccw0(cmd: u8, flags: u8, count: u16, cda: u32) -> [u8; 8] {
    let a = cda.to_be_bytes();
    let c = count.to_be_bytes();
    [cmd, a[1], a[2], a[3], flags, 0, c[0], c[1]]
}

#[cfg(test)]
#[path = "chanprog_tests.rs"]
mod tests;
