//! Channel programs for generated `io` steps. The shapes aim at vfio-ccw's translation
//! (`cp_init`/`cp_prefetch`): data that spans pages, IDALs of every format, command and data
//! chains, TICs to new and to already-built chains, the chain length and chain count limits,
//! addresses nothing is mapped at, format-0 CCWs and odd ORBs, and functions the I/O region
//! refuses. Every program is one `ChannelProgram::problem` accepts.

use ccwrig_proto::chanprog::{
    Ccw, CcwCmd, CcwFlag, ChannelProgram, DataRef, IoFunction, Orb, DATA_LEN,
};
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// vfio-ccw's limits (`vfio_ccw_cp.h`): CCWs per chain, chains per program.
const CHAIN_LEN_MAX: usize = 256;
const CHAIN_COUNT_MAX: usize = 16;

/// Logical path masks to try. Each keeps path 0x80, the only one QEMU gives a device: a mask
/// without it makes QEMU answer with a deferred cc 3 that it never clears again, which loses
/// the device (a known QEMU bug, `scenarios/findings/qemu-sticky-deferred-cc3.md`), and every
/// such program would cost a device-state finding and a fresh VM.
const LPMS: [u8; 3] = [0x80, 0xc0, 0xff];

/// A program, and whether it is built to leave the subchannel suspended (so the step must not
/// wait for an interrupt).
pub fn program(rng: &mut ChaCha8Rng) -> (ChannelProgram, bool) {
    let mut orb = Orb::default();
    // Format-2 IDAWs for direct CCWs too: vfio-ccw then builds 4K IDAWs itself and pins
    // contiguous pages in one call (2K ones are pinned one by one).
    orb.c64 = rng.random_bool(0.4);
    orb.i2k = orb.c64 && rng.random_bool(0.3);
    let ccws = match rng.random_range(0..10) {
        0 | 1 => vec![data_ccw(rng, false)],
        9 => pin_then_fail(rng),
        2 => {
            orb.c64 = rng.random_bool(0.5);
            orb.i2k = orb.c64 && rng.random_bool(0.5);
            (0..rng.random_range(1..=3))
                .map(|i| {
                    let mut c = data_ccw(rng, true);
                    if i > 0 {
                        c.flags.push(CcwFlag::Cc);
                    }
                    c
                })
                .rev()
                .collect()
        }
        3 => {
            let n = rng.random_range(2..=8);
            chain(rng, n)
        }
        4 => tic_chains(rng),
        5 => limit(rng),
        6 => {
            let mut c = data_ccw(rng, false);
            c.data = DataRef::Unmapped;
            if rng.random_bool(0.3) {
                vec![Ccw {
                    cmd: CcwCmd::Tic,
                    flags: vec![],
                    count: 0,
                    data: DataRef::Unmapped,
                }]
            } else {
                vec![c]
            }
        }
        7 => vec![Ccw {
            cmd: *[CcwCmd::Nop, CcwCmd::Read, CcwCmd::Sense, CcwCmd::SenseId]
                .choose(rng)
                .unwrap_or(&CcwCmd::Nop),
            flags: if rng.random_bool(0.5) {
                vec![CcwFlag::Skip, CcwFlag::Sli]
            } else {
                vec![]
            },
            count: *[0u16, 8, 4096].choose(rng).unwrap_or(&0),
            data: DataRef::Buf(0),
        }],
        _ => {
            // Suspend: the first CCW suspends the program (ORB suspend control set).
            orb.suspend = true;
            let mut c = data_ccw(rng, false);
            c.flags.push(CcwFlag::Suspend);
            let mut v = vec![c];
            if rng.random_bool(0.5) {
                v[0].flags.push(CcwFlag::Cc);
                v.push(data_ccw(rng, false));
            }
            v
        }
    };
    let mut p = ChannelProgram {
        orb,
        function: IoFunction::Start,
        ccws,
    };
    season(rng, &mut p);
    let suspends = p.orb.suspend
        && p.ccws.iter().any(|c| c.flags.contains(&CcwFlag::Suspend))
        && p.function == IoFunction::Start;
    if p.problem().is_some() {
        // Seasoning can push IDAL data past the area (a 2K block is now 4K): the plain form.
        p.orb = Orb {
            c64: p.orb.c64,
            i2k: p.orb.i2k,
            suspend: p.orb.suspend,
            ..Orb::default()
        };
    }
    (p, suspends)
}

/// Odd ORBs and I/O-region functions, on top of any shape.
fn season(rng: &mut ChaCha8Rng, p: &mut ChannelProgram) {
    if rng.random_bool(0.25) {
        match rng.random_range(0..6) {
            0 => p.orb.format0 = true,
            1 => p.orb.prefetch = false,
            2 => p.orb.transport = true,
            3 => p.orb.key = rng.random_range(1..16),
            4 => p.orb.lpm = *LPMS.choose(rng).unwrap_or(&0x80),
            _ => p.orb.c64 = !p.orb.c64,
        }
    }
    if rng.random_bool(0.06) {
        p.function = *[IoFunction::Halt, IoFunction::Clear, IoFunction::None]
            .choose(rng)
            .unwrap_or(&IoFunction::Halt);
    }
}

/// One CCW that moves data (or is told to skip it) into the data area, at an offset and with
/// a count that may cross pages.
fn data_ccw(rng: &mut ChaCha8Rng, idal: bool) -> Ccw {
    let cmd = *[
        CcwCmd::SenseId,
        CcwCmd::SenseId,
        CcwCmd::Sense,
        CcwCmd::Read,
        CcwCmd::Write,
        CcwCmd::ReadBackward,
    ]
    .choose(rng)
    .unwrap_or(&CcwCmd::SenseId);
    let count = *[1u16, 7, 8, 32, 2048, 4096, 4097, 9000, 20000]
        .choose(rng)
        .unwrap_or(&8);
    let off = *[0u32, 8, 2040, 2048, 4090, 4096 * 5 + 100]
        .choose(rng)
        .unwrap_or(&0);
    let mut flags = vec![];
    if rng.random_bool(0.7) {
        flags.push(CcwFlag::Sli);
    }
    if rng.random_bool(0.1) {
        flags.push(CcwFlag::Skip);
    }
    if rng.random_bool(0.1) {
        flags.push(CcwFlag::Pci);
    }
    let data = if idal {
        DataRef::Idal {
            off,
            scatter: rng.random_bool(0.4),
        }
    } else {
        DataRef::Buf(off.min(DATA_LEN - u32::from(count)))
    };
    Ccw {
        cmd,
        flags,
        count,
        data,
    }
}

/// `n` CCWs chained by command chaining (and now and then data chaining), the last unchained.
fn chain(rng: &mut ChaCha8Rng, n: usize) -> Vec<Ccw> {
    (0..n)
        .map(|i| {
            let mut c = if rng.random_bool(0.3) {
                Ccw {
                    cmd: CcwCmd::Nop,
                    flags: vec![],
                    count: 0,
                    data: DataRef::None,
                }
            } else {
                data_ccw(rng, false)
            };
            if i + 1 < n {
                c.flags.push(if rng.random_bool(0.2) {
                    CcwFlag::Cd
                } else {
                    CcwFlag::Cc
                });
            }
            c
        })
        .collect()
}

/// A first chain that TICs forward to a second; sometimes a further TIC (chained, so it
/// belongs to the first chain) into the second chain, which then already exists; sometimes
/// a TIC inside its own chain.
fn tic_chains(rng: &mut ChaCha8Rng) -> Vec<Ccw> {
    let a = rng.random_range(1..=3);
    let b = rng.random_range(1..=3);
    let again = rng.random_bool(0.4);
    let tics = 1 + usize::from(again);
    let target = (a + tics) as u16;
    let mut v = chain(rng, a);
    if let Some(last) = v.last_mut() {
        last.flags.retain(|f| *f != CcwFlag::Cd);
        last.flags.push(CcwFlag::Cc);
    }
    for k in 0..tics {
        v.push(Ccw {
            cmd: CcwCmd::Tic,
            flags: if k + 1 < tics {
                vec![CcwFlag::Cc]
            } else {
                vec![]
            },
            count: 0,
            data: DataRef::Ccw(target + u16::from(k > 0 && b > 1)),
        });
    }
    v.extend(chain(rng, b));
    v
}

/// Pages pinned, then a later CCW whose data nothing maps: `cp_prefetch` stops there, cuts
/// the chains it did not reach, and the request's `cp_free` unpins what was pinned (in the
/// writer's context, unlike the unpin after an interrupt). Sometimes the failure sits in the
/// first chain while a TIC has already built a second.
fn pin_then_fail(rng: &mut ChaCha8Rng) -> Vec<Ccw> {
    let mut first = data_ccw(rng, false);
    first.count = *[4097u16, 9000, 20000].choose(rng).unwrap_or(&9000);
    first.data = DataRef::Buf(0);
    first.flags = vec![CcwFlag::Cc, CcwFlag::Sli];
    let mut bad = data_ccw(rng, false);
    bad.data = DataRef::Unmapped;
    bad.flags.retain(|f| *f != CcwFlag::Skip);
    if rng.random_bool(0.5) {
        return vec![first, bad];
    }
    bad.flags.push(CcwFlag::Cc);
    let tic = Ccw {
        cmd: CcwCmd::Tic,
        flags: vec![],
        count: 0,
        data: DataRef::Ccw(3),
    };
    vec![first, bad, tic, data_ccw(rng, false)]
}

/// Right at vfio-ccw's limits or one past them: a chain of 256 or 257 CCWs, or 16 or 17
/// chains linked by TICs.
fn limit(rng: &mut ChaCha8Rng) -> Vec<Ccw> {
    let over = usize::from(rng.random_bool(0.5));
    let nop = |flags: Vec<CcwFlag>| Ccw {
        cmd: CcwCmd::Nop,
        flags,
        count: 0,
        data: DataRef::None,
    };
    if rng.random_bool(0.5) {
        let n = CHAIN_LEN_MAX + over;
        (0..n)
            .map(|i| nop(if i + 1 < n { vec![CcwFlag::Cc] } else { vec![] }))
            .collect()
    } else {
        // Chain k: a chained NOP, then a TIC to chain k + 1; the last chain is one NOP.
        let chains = CHAIN_COUNT_MAX + over;
        let mut v = Vec::new();
        for k in 0..chains - 1 {
            v.push(nop(vec![CcwFlag::Cc]));
            v.push(Ccw {
                cmd: CcwCmd::Tic,
                flags: vec![],
                count: 0,
                data: DataRef::Ccw((2 * k + 2) as u16),
            });
        }
        v.push(nop(vec![]));
        v
    }
}

/// `p` changed in one place (a CCW's count, flag, command or data; a CCW appended or the
/// last dropped; an ORB option), still a program `problem` accepts; `None` when eight tries
/// gave none.
pub fn tweak(p: &ChannelProgram, rng: &mut ChaCha8Rng) -> Option<ChannelProgram> {
    for _ in 0..8 {
        let mut q = p.clone();
        let n = q.ccws.len();
        let i = rng.random_range(0..n.max(1));
        match rng.random_range(0..8) {
            0 => {
                q.ccws.get_mut(i)?.count = *[0u16, 1, 8, 255, 256, 2048, 4095, 4097, 9000]
                    .choose(rng)
                    .unwrap_or(&8)
            }
            1 => {
                let f = *[
                    CcwFlag::Cc,
                    CcwFlag::Cd,
                    CcwFlag::Sli,
                    CcwFlag::Skip,
                    CcwFlag::Pci,
                    CcwFlag::Suspend,
                ]
                .choose(rng)
                .unwrap_or(&CcwFlag::Sli);
                let c = q.ccws.get_mut(i)?;
                if c.flags.contains(&f) {
                    c.flags.retain(|x| *x != f);
                } else {
                    c.flags.push(f);
                }
            }
            2 => {
                let c = q.ccws.get_mut(i)?;
                if c.cmd != CcwCmd::Tic {
                    c.cmd = data_ccw(rng, false).cmd;
                }
            }
            3 => {
                let c = q.ccws.get_mut(i)?;
                if c.cmd != CcwCmd::Tic {
                    let off = *[0u32, 8, 2040, 4092, 4096].choose(rng).unwrap_or(&0);
                    c.data = match rng.random_range(0..4) {
                        0 => DataRef::Buf(off),
                        1 => DataRef::Idal {
                            off,
                            scatter: rng.random_bool(0.5),
                        },
                        2 => DataRef::Unmapped,
                        _ => DataRef::None,
                    };
                }
            }
            4 => {
                if let Some(last) = q.ccws.last_mut() {
                    last.flags.push(CcwFlag::Cc);
                }
                let idal = rng.random_bool(0.3);
                q.ccws.push(data_ccw(rng, idal));
            }
            5 if n > 1 => {
                // A TIC that pointed at it now points nowhere: `problem` refuses that.
                q.ccws.pop();
            }
            6 => {
                let o = &mut q.orb;
                match rng.random_range(0..7) {
                    0 => o.format0 = !o.format0,
                    1 => o.prefetch = !o.prefetch,
                    2 => o.c64 = !o.c64,
                    3 => o.i2k = !o.i2k,
                    4 => o.transport = !o.transport,
                    5 => o.key = rng.random_range(0..16),
                    _ => o.lpm = *[0u8, 0x80, 0xc0, 0xff].choose(rng).unwrap_or(&0),
                }
            }
            _ => {
                let (fresh, _) = program(rng);
                q.ccws = fresh.ccws;
            }
        }
        if q != *p && q.problem().is_none() {
            return Some(q);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_generated_program_can_be_laid_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut tics = 0;
        let mut long = 0;
        for _ in 0..5000 {
            let (p, _) = program(&mut rng);
            assert_eq!(p.problem(), None, "{p:?}");
            tics += usize::from(p.ccws.iter().any(|c| c.cmd == CcwCmd::Tic));
            long += usize::from(p.ccws.len() > CHAIN_LEN_MAX);
        }
        assert!(tics > 300 && long > 50, "tics {tics}, long {long}");
    }

    #[test]
    fn tweaks_change_one_thing_and_stay_valid() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let (mut changed, mut none) = (0, 0);
        for _ in 0..2000 {
            let (p, _) = program(&mut rng);
            match tweak(&p, &mut rng) {
                Some(q) => {
                    assert_ne!(q, p);
                    assert_eq!(q.problem(), None, "{q:?}");
                    changed += 1;
                }
                None => none += 1,
            }
        }
        assert!(changed > 1900, "{changed} tweaked, {none} not");
    }

    #[test]
    fn no_generated_mask_leaves_out_the_only_path() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..3000 {
            let (p, _) = program(&mut rng);
            let q = tweak(&p, &mut rng).unwrap_or(p);
            assert!(q.orb.lpm == 0 || q.orb.lpm & 0x80 != 0, "{:?}", q.orb);
        }
    }

    #[test]
    fn limits_sit_on_both_sides() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let sizes: std::collections::BTreeSet<usize> =
            (0..200).map(|_| limit(&mut rng).len()).collect();
        // 256/257 CCWs in one chain, or 16/17 chains of NOP + TIC (31/33 CCWs).
        assert_eq!(sizes, [31, 33, 256, 257].into_iter().collect());
    }

    #[test]
    fn a_second_tic_lands_in_the_chain_the_first_built() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let found = (0..500).map(|_| tic_chains(&mut rng)).any(|v| {
            let t: Vec<u16> = v
                .iter()
                .filter_map(|c| match c.data {
                    DataRef::Ccw(to) if c.cmd == CcwCmd::Tic => Some(to),
                    _ => None,
                })
                .collect();
            t.len() == 2 && t[1] > t[0]
        });
        assert!(found);
    }
}
