//! Config fragments: which ones a profile applies, and whether what they ask for survived
//! `olddefconfig` (Kconfig silently drops options whose dependencies are unmet).

use super::Profile;
use std::collections::HashMap;

/// A fragment as applied: a name for messages and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub name: String,
    pub text: String,
}

const FAST: &str = include_str!("../../../kernel/configs/fast.config");
const KASAN: &str = include_str!("../../../kernel/configs/kasan.config");
const LOCKDEP: &str = include_str!("../../../kernel/configs/lockdep.config");
const COVER: &str = include_str!("../../../kernel/configs/cover.config");
/// Per stable line overlays: (VERSION.PATCHLEVEL, file name, text).
const OVERLAYS: &[(&str, &str, &str)] = &[(
    "6.1",
    "fast-6.1.config",
    include_str!("../../../kernel/configs/fast-6.1.config"),
)];

/// The overlays for a kernel line (`6.1`), applied after the profile's fragments: options a
/// line needs that the shared fragment cannot name without changing every other line's build.
pub fn overlays(line: &str) -> Vec<Fragment> {
    OVERLAYS
        .iter()
        .filter(|(l, _, _)| *l == line)
        .map(|(_, name, text)| Fragment {
            name: format!("kernel/configs/{name}"),
            text: text.to_string(),
        })
        .collect()
}

fn shipped(name: &str, text: &str) -> Fragment {
    Fragment {
        name: format!("kernel/configs/{name}"),
        text: text.to_string(),
    }
}

/// The fragments of a profile, in merge order (later ones win).
pub fn for_profile(profile: Profile) -> Vec<Fragment> {
    match profile {
        Profile::Fast => vec![shipped("fast.config", FAST)],
        // Both halves in one kernel: debug has no options of its own to keep apart from theirs.
        Profile::Debug => vec![
            shipped("fast.config", FAST),
            shipped("kasan.config", KASAN),
            shipped("lockdep.config", LOCKDEP),
        ],
        Profile::Kasan => vec![shipped("fast.config", FAST), shipped("kasan.config", KASAN)],
        Profile::Lockdep => vec![
            shipped("fast.config", FAST),
            shipped("lockdep.config", LOCKDEP),
        ],
    }
}

/// The fragments of a build: the profile's, then KCOV's for a cover kernel.
pub fn for_build(profile: Profile, cover: bool) -> Vec<Fragment> {
    let mut f = for_profile(profile);
    if cover {
        f.push(shipped("cover.config", COVER));
    }
    f
}

/// What a `.config` or a fragment says about one symbol: `Some(value)` when set (`y`, `m`,
/// `4`, `"str"`), `None` when explicitly not set.
pub type Setting = Option<String>;

/// Parses `CONFIG_X=v` and `# CONFIG_X is not set` lines; `CONFIG_X=n` counts as not set.
/// Keys are symbol names without the `CONFIG_` prefix.
pub fn parse(text: &str) -> Vec<(String, Setting, usize)> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(sym) = rest.strip_suffix(" is not set") {
                out.push((sym.to_string(), None, idx + 1));
            }
        } else if let Some(rest) = line.strip_prefix("CONFIG_") {
            if let Some((sym, val)) = rest.split_once('=') {
                let val = val.trim();
                let setting = if val == "n" {
                    None
                } else {
                    Some(val.to_string())
                };
                out.push((sym.trim().to_string(), setting, idx + 1));
            }
        }
    }
    out
}

/// A final `.config` as a map; symbols absent from it are not set.
pub fn parse_config(text: &str) -> HashMap<String, Setting> {
    parse(text)
        .into_iter()
        .map(|(sym, setting, _)| (sym, setting))
        .collect()
}

/// A fragment line whose wish the final `.config` does not grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStuck {
    pub symbol: String,
    pub wanted: Setting,
    pub got: Setting,
    pub fragment: String,
    pub line: usize,
}

impl NotStuck {
    pub fn describe(&self) -> String {
        format!(
            "CONFIG_{}={} (line {}) ended up {}",
            self.symbol,
            show(&self.wanted),
            self.line,
            show(&self.got)
        )
    }
}

fn show(s: &Setting) -> &str {
    s.as_deref().unwrap_or("n")
}

/// Compares every fragment line with the final config. When several fragments set a symbol
/// the last one is what merge_config.sh kept, so only that line is checked.
pub fn verify(fragments: &[Fragment], final_config: &str) -> Vec<NotStuck> {
    let got = parse_config(final_config);
    let mut wanted: Vec<NotStuck> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for frag in fragments {
        for (symbol, setting, line) in parse(&frag.text) {
            let entry = NotStuck {
                symbol: symbol.clone(),
                wanted: setting,
                got: None,
                fragment: frag.name.clone(),
                line,
            };
            match index.get(&symbol) {
                Some(&i) => wanted[i] = entry,
                None => {
                    index.insert(symbol, wanted.len());
                    wanted.push(entry);
                }
            }
        }
    }
    wanted
        .into_iter()
        .filter_map(|mut w| {
            w.got = got.get(&w.symbol).cloned().flatten();
            (w.got != w.wanted).then_some(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> Fragment {
        Fragment {
            name: name.into(),
            text: text.into(),
        }
    }

    const FINAL: &str = "\
CONFIG_VFIO=y
CONFIG_NR_CPUS=4
CONFIG_CMDLINE=\"quiet\"
# CONFIG_IOMMU_SUPPORT is not set
# CONFIG_PANIC_ON_OOPS is not set
";

    #[test]
    fn granted_wishes_pass() {
        let f = frag(
            "a",
            "# comment\nCONFIG_VFIO=y\nCONFIG_NR_CPUS=4\nCONFIG_CMDLINE=\"quiet\"\n# CONFIG_PANIC_ON_OOPS is not set\nCONFIG_KASAN=n\n",
        );
        assert_eq!(
            verify(&[f], FINAL),
            vec![],
            "absent symbols count as not set"
        );
    }

    #[test]
    fn dropped_and_changed_options_are_reported_with_their_fragment() {
        let f = frag(
            "fast.config",
            "CONFIG_VFIO=y\nCONFIG_IOMMUFD=y\nCONFIG_NR_CPUS=8\n# CONFIG_VFIO is not set\n",
        );
        let bad = verify(&[f], FINAL);
        let syms: Vec<_> = bad.iter().map(|b| b.symbol.as_str()).collect();
        assert_eq!(syms, ["VFIO", "IOMMUFD", "NR_CPUS"]);
        assert_eq!(
            bad[0].line, 4,
            "the last line about a symbol is the one that counts"
        );
        assert_eq!(bad[1].describe(), "CONFIG_IOMMUFD=y (line 2) ended up n");
        assert_eq!(bad[2].got.as_deref(), Some("4"));
        assert!(bad.iter().all(|b| b.fragment == "fast.config"));
    }

    #[test]
    fn later_fragments_override_earlier_ones() {
        let a = frag(
            "fast.config",
            "# CONFIG_IOMMU_SUPPORT is not set\nCONFIG_VFIO=y\n",
        );
        let b = frag("debug.config", "CONFIG_IOMMU_SUPPORT=y\n");
        let bad = verify(&[a, b], FINAL);
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].symbol.as_str(), bad[0].fragment.as_str()),
            ("IOMMU_SUPPORT", "debug.config")
        );
    }

    #[test]
    fn the_6_1_overlay_enables_what_its_vfio_ccw_depends_on() {
        let o = overlays("6.1");
        assert_eq!(o.len(), 1);
        let c = parse_config(&o[0].text);
        assert_eq!(c.get("S390_CCW_IOMMU"), Some(&Some("y".to_string())));
        assert!(
            overlays("6.12").is_empty(),
            "6.12 builds keep their cache keys"
        );
    }

    #[test]
    fn shipped_fragments_parse_and_cover_the_essentials() {
        let fast = parse_config(&for_profile(Profile::Fast)[0].text);
        for sym in [
            "VFIO_CCW",
            "IOMMUFD",
            "VFIO_DEVICE_CDEV",
            "VIRTIO_CONSOLE",
            "USERFAULTFD",
            "KPROBE_EVENTS",
        ] {
            assert_eq!(fast.get(sym), Some(&Some("y".to_string())), "{sym}");
        }
        assert_eq!(fast.get("PANIC_ON_OOPS"), Some(&None));
        let names = |p| {
            for_profile(p)
                .into_iter()
                .map(|f| f.name)
                .collect::<Vec<String>>()
        };
        // debug is exactly fast with both halves.
        assert_eq!(
            names(Profile::Debug),
            [
                "kernel/configs/fast.config".to_string(),
                names(Profile::Kasan)[1].clone(),
                names(Profile::Lockdep)[1].clone(),
            ]
        );
    }

    #[test]
    fn cover_adds_kcov_last_on_either_profile_and_nothing_otherwise() {
        for p in Profile::ALL {
            assert_eq!(for_build(p, false), for_profile(p));
            let f = for_build(p, true);
            assert_eq!(f.len(), for_profile(p).len() + 1);
            let last = f.last().unwrap();
            assert_eq!(last.name, "kernel/configs/cover.config");
            let c = parse_config(&last.text);
            assert_eq!(c.get("KCOV"), Some(&Some("y".to_string())));
            assert_eq!(c.get("KCOV_INSTRUMENT_ALL"), Some(&Some("y".to_string())));
        }
    }
}
