//! Builds (or finds in the cache) a kernel and prints where it is and how long that took.
//! Used to measure cold builds and cache hits by hand:
//! `cargo run --example kernel_build -- fast` twice.

use ccwrig::kernel::{self, BuildRequest, Profile};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    profile: Profile,
    #[arg(long)]
    tree: Option<PathBuf>,
    #[arg(long)]
    patches: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Only look the kernel up, do not build it.
    #[arg(long)]
    lookup: bool,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    let req = BuildRequest {
        profile: a.profile,
        version: None,
        tree: a.tree,
        patches: a.patches,
        config: a.config,
        cover: false,
        jobs: a.jobs,
        progress: true,
    };
    let t = Instant::now();
    let result = if a.lookup {
        kernel::cached(&req)
    } else {
        kernel::build(&req).map(Some)
    };
    let secs = t.elapsed().as_secs_f64();
    match result {
        Ok(Some(k)) => {
            let size = std::fs::metadata(&k.bzimage).map(|m| m.len()).unwrap_or(0);
            println!("release   {}", k.release);
            println!("cache_hit {}", k.cache_hit);
            println!("seconds   {secs:.3}");
            println!("key       {}", k.key);
            println!("bzImage   {} ({size} bytes)", k.bzimage.display());
            println!("vmlinux   {}", k.vmlinux.display());
            println!("src       {}", k.src.display());
            println!("log       {}", k.build_log.display());
            std::process::ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("not cached ({secs:.3} s)");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
