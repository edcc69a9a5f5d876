//! KCOV coverage of one operation, as the agent returns it with the result when the host
//! asked for it ([`crate::Request::cover`]).
//!
//! One operation on a kernel instrumented throughout covers thousands of distinct PCs, each
//! a kernel text address in a range of a few MB: sorted, consecutive PCs are mostly a few
//! dozen bytes apart, so the set travels as LEB128 deltas in hex (about 2.2 characters a PC
//! against about 16 for a JSON array of addresses).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct kernel PCs, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcSet(Vec<u64>);

impl PcSet {
    /// The set of the PCs in a trace (any order, repeats allowed).
    pub fn from_trace(pcs: impl IntoIterator<Item = u64>) -> PcSet {
        let mut v: Vec<u64> = pcs.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        PcSet(v)
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The wire form: each PC's distance from the previous one (the first from 0) as LEB128,
    /// the bytes in lower-case hex.
    pub fn encode(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(self.0.len() * 3);
        let mut prev = 0u64;
        for &pc in &self.0 {
            let mut d = pc - prev;
            prev = pc;
            loop {
                let mut byte = (d & 0x7f) as u8;
                d >>= 7;
                if d != 0 {
                    byte |= 0x80;
                }
                out.push(HEX[(byte >> 4) as usize] as char);
                out.push(HEX[(byte & 0xf) as usize] as char);
                if d == 0 {
                    break;
                }
            }
        }
        out
    }

    /// Reads [`PcSet::encode`]'s form back; anything else is an error naming what is wrong.
    pub fn decode(text: &str) -> Result<PcSet, String> {
        let bytes = text.as_bytes();
        if bytes.len() % 2 != 0 {
            return Err(format!("odd number of hex digits ({})", bytes.len()));
        }
        let nibble = |c: u8, at: usize| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(format!("not a hex digit at {at}: {:?}", c as char)),
        };
        let mut out = Vec::new();
        let (mut prev, mut delta, mut shift) = (0u64, 0u64, 0u32);
        for (i, pair) in bytes.chunks(2).enumerate() {
            let byte = nibble(pair[0], 2 * i)? << 4 | nibble(pair[1], 2 * i + 1)?;
            if shift > 63 || (shift == 63 && byte & 0x7e != 0) {
                return Err(format!("delta longer than 64 bits at byte {i}"));
            }
            delta |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 != 0 {
                shift += 7;
                continue;
            }
            if delta == 0 && !out.is_empty() {
                return Err(format!("repeated PC at byte {i}"));
            }
            prev = prev
                .checked_add(delta)
                .ok_or_else(|| format!("PC beyond 64 bits at byte {i}"))?;
            out.push(prev);
            (delta, shift) = (0, 0);
        }
        if shift != 0 {
            return Err("the last delta is cut short".into());
        }
        Ok(PcSet(out))
    }
}

impl Serialize for PcSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for PcSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PcSet, D::Error> {
        let text = String::deserialize(d)?;
        PcSet::decode(&text).map_err(serde::de::Error::custom)
    }
}

/// What KCOV saw of one operation's own thread (kworkers and other threads the operation
/// woke are not in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cover {
    Pcs {
        /// Offsets from the runtime `_stext` (KASLR and the kernel's runtime mapping do not
        /// change them; the link-time `_stext` plus an offset is the vmlinux address).
        pcs: PcSet,
        /// Trace entries the operation produced, repeats included.
        hits: u64,
        /// The trace buffer filled up: basic blocks after the first `hits` are missing.
        full: bool,
    },
    /// The agent could not trace the operation: no `/sys/kernel/debug/kcov` (not a cover
    /// kernel), or a KCOV call failed.
    Unavailable { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_becomes_a_sorted_set_and_round_trips() {
        let base = 0x0000_0000_0010_0000u64;
        let trace = [
            base + 0x40,
            base,
            base + 0x40,
            base + 0x1_0000_0006,
            u64::MAX,
            base,
        ];
        let set = PcSet::from_trace(trace);
        assert_eq!(
            set.as_slice(),
            [base, base + 0x40, base + 0x1_0000_0006, u64::MAX]
        );
        let text = set.encode();
        assert_eq!(PcSet::decode(&text), Ok(set.clone()));
        // 0x40 apart: one byte.
        assert!(text.contains("40"), "{text}");
        assert_eq!(PcSet::decode(""), Ok(PcSet::default()));
    }

    #[test]
    fn dense_kernel_pcs_cost_about_two_characters_each() {
        let set = PcSet::from_trace((0..10_000u64).map(|i| 0x10_0000 + i * 22));
        let chars = set.encode().len();
        assert!(chars < 10_000 * 2 + 16, "{chars}");
    }

    #[test]
    fn malformed_text_is_an_error() {
        for bad in ["4", "zz", "80", "0000", "ffffffffffffffffffff01"] {
            assert!(PcSet::decode(bad).is_err(), "{bad}");
        }
        // Uppercase is not what encode writes.
        assert!(PcSet::decode("4A").is_err());
    }

    #[test]
    fn cover_travels_in_json_with_its_kind() {
        let c = Cover::Pcs {
            pcs: PcSet::from_trace([0x100, 0x116]),
            hits: 3,
            full: false,
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"pcs","pcs":"800216","hits":3,"full":false}"#
        );
        assert_eq!(serde_json::from_str::<Cover>(&json).unwrap(), c);
        let bad = r#"{"kind":"pcs","pcs":"8","hits":1,"full":false}"#;
        assert!(serde_json::from_str::<Cover>(bad).is_err());
        let u = Cover::Unavailable {
            reason: "no kcov".into(),
        };
        let back: Cover = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
        assert_eq!(back, u);
    }
}
