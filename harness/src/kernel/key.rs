//! The cache key of a kernel build: every input that can change the resulting image.

use super::fragment::Fragment;
use super::patches::Patch;
use super::source::Identity;
use crate::cache::KeyBuilder;

/// Bumped whenever the build recipe (config steps, make targets, variables) changes, so
/// entries built the old way are not reused.
const RECIPE: &str =
    "v1 ARCH=s390 allnoconfig|user-config + merge_config.sh -m + olddefconfig; make bzImage";

/// Everything a build depends on, already read into memory.
pub struct Inputs<'a> {
    pub source: &'a Identity,
    pub fragments: &'a [Fragment],
    pub patches: &'a [Patch],
    pub user_config: Option<&'a [u8]>,
    /// `s390x-linux-gnu-gcc --version`: a compiler upgrade changes the code generated.
    pub compiler: &'a str,
    /// Variables on make's command line beyond the recipe's (a cover build's GCOV objects).
    pub make_vars: &'a [String],
}

pub fn compose(inputs: &Inputs) -> KeyBuilder {
    let mut k = KeyBuilder::new("kernel");
    k.str("recipe", RECIPE);
    for (label, bytes) in inputs.source {
        k.bytes(&format!("source:{label}"), bytes);
    }
    k.str("fragment-count", &inputs.fragments.len().to_string());
    for f in inputs.fragments {
        k.str("fragment-name", &f.name).str("fragment", &f.text);
    }
    // Patch names are not part of the key: renaming a file does not change the kernel.
    k.str("patch-count", &inputs.patches.len().to_string());
    for p in inputs.patches {
        k.bytes("patch", &p.text);
    }
    match inputs.user_config {
        Some(c) => k.bytes("user-config", c),
        None => k.str("base-config", "allnoconfig"),
    };
    k.str("compiler", inputs.compiler);
    // Only when there are any, so the keys of builds without them stay what they were.
    if !inputs.make_vars.is_empty() {
        k.str("make-vars", &inputs.make_vars.join(" "));
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owned {
        source: Identity,
        fragments: Vec<Fragment>,
        patches: Vec<Patch>,
        user_config: Option<Vec<u8>>,
        compiler: String,
        make_vars: Vec<String>,
    }

    impl Owned {
        fn key(&self) -> String {
            compose(&Inputs {
                source: &self.source,
                fragments: &self.fragments,
                patches: &self.patches,
                user_config: self.user_config.as_deref(),
                compiler: &self.compiler,
                make_vars: &self.make_vars,
            })
            .finish()
        }
    }

    fn base() -> Owned {
        Owned {
            source: vec![("tarball-sha256", b"abc".to_vec())],
            fragments: vec![Fragment {
                name: "fast.config".into(),
                text: "CONFIG_VFIO=y\n".into(),
            }],
            patches: vec![
                Patch {
                    name: "0001.patch".into(),
                    text: b"one".to_vec(),
                },
                Patch {
                    name: "0002.patch".into(),
                    text: b"two".to_vec(),
                },
            ],
            user_config: None,
            compiler: "gcc 12.2.0".into(),
            make_vars: Vec::new(),
        }
    }

    #[test]
    fn same_inputs_same_key() {
        assert_eq!(base().key(), base().key());
    }

    /// A named change to one input of the key.
    type Change = (&'static str, Box<dyn Fn(&mut Owned)>);

    #[test]
    fn every_input_changes_the_key() {
        let k = base().key();
        let variants: Vec<Change> = vec![
            ("source", Box::new(|o| o.source[0].1 = b"abd".to_vec())),
            ("source kind", Box::new(|o| o.source[0].0 = "git-head")),
            (
                "fragment text",
                Box::new(|o| o.fragments[0].text.push_str("CONFIG_KASAN=y\n")),
            ),
            (
                "extra fragment",
                Box::new(|o| {
                    o.fragments.push(Fragment {
                        name: "debug.config".into(),
                        text: String::new(),
                    })
                }),
            ),
            (
                "patch text",
                Box::new(|o| o.patches[1].text = b"two!".to_vec()),
            ),
            ("patch order", Box::new(|o| o.patches.reverse())),
            (
                "patch dropped",
                Box::new(|o| {
                    o.patches.pop();
                }),
            ),
            (
                "make variable",
                Box::new(|o| o.make_vars.push("GCOV_PROFILE_x.o=y".into())),
            ),
            (
                "user config",
                Box::new(|o| o.user_config = Some(b"CONFIG_X=y\n".to_vec())),
            ),
            ("compiler", Box::new(|o| o.compiler = "gcc 13".into())),
        ];
        for (what, change) in variants {
            let mut o = base();
            change(&mut o);
            assert_ne!(o.key(), k, "{what} must change the key");
        }
    }

    #[test]
    fn patch_file_names_do_not_change_the_key() {
        let mut o = base();
        o.patches[0].name = "renamed.patch".into();
        assert_eq!(o.key(), base().key());
    }
}
