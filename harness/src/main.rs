//! The `ccwrig` command line. Library errors are typed (thiserror); here they become anyhow
//! reports with one line naming the cause and the fix.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ccwrig",
    version,
    about = "Boots an s390x kernel in QEMU and races vfio-ccw mdev lifecycles against it"
)]
struct Cli {
    /// Log verbosity for the harness itself (e.g. debug, ccwrig=trace).
    #[arg(long, global = true, env = "CCWRIG_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the guest, wait for the agent, print the kernel version and boot-to-ready time.
    Boot(cmd::boot::BootArgs),
    /// Boot the guest with an interactive shell on its console (Ctrl-] quits).
    Shell(cmd::shell::ShellArgs),
    /// Where the guest kernel's time goes while a command runs in the guest: QEMU's gdbstub
    /// samples every vCPU's PSW address, the samples are counted per function of vmlinux.
    Profile(cmd::profile::ProfileArgs),
    /// Benchmarks (numbers, not pass/fail).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Kernel builds.
    #[command(subcommand)]
    Kernel(cmd::kernel::KernelCommand),
    /// Build the guest initramfs (agent + busybox) and print its path.
    Image {
        /// The nested image: also Debian's s390x qemu-system-s390x and its libraries.
        #[arg(long)]
        nested: bool,
    },
    /// Run the crash detector on saved console logs; one JSON object per report.
    Triage(cmd::triage::TriageArgs),
    /// Run scenarios (default: all of scenarios/), one fresh VM each: the main job.
    Run(cmd::run::RunArgs),
    /// Run the scenarios N rounds with fresh seeds and tally passes, known findings and
    /// failures per scenario: the flake hunt.
    Soak(cmd::soak::SoakArgs),
    /// Run the scenarios on several pinned stable lines and print a scenario × kernel table.
    Compare(cmd::compare::CompareArgs),
    /// A run written up for the mailing list: summary, kernel, patches, reproducer, decoded
    /// call trace (file:line), FSM timeline, console, rerun line.
    Report(cmd::report::ReportArgs),
    /// Write a scenario as a standalone C reproducer (threads, barriers, the seed's jitter,
    /// the agent's syscalls and ioctls) that builds with `s390x-linux-gnu-gcc -static`.
    ReproC(cmd::repro_c::ReproCArgs),
    /// Fuzz: generated programs in long-lived VMs; findings deduplicated, reproduced, shrunk.
    Fuzz(cmd::fuzz::FuzzArgs),
    /// Replay a fuzz finding's VM history (the programs run since boot) in fresh VMs: rate of
    /// the program alone vs the history, then the history shrunk to what the crash needs.
    Replay(cmd::replay::ReplayArgs),
    /// Line coverage of programs run on a cover kernel (--cover): index.html with every line
    /// of the vfio-ccw, cio and vfio sources marked, and a per-function summary.
    Cover(cmd::cover::CoverArgs),
    /// KTAP and KCIDB from run directories on disk (e.g. the nextest suite's scenario-runs/).
    CiReport(cmd::ci_report::CiReportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccwrig: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Boot(a) => cmd::boot::run(a).await,
            Command::Shell(a) => cmd::shell::run(a).await,
            Command::Profile(a) => cmd::profile::run(a).await,
            Command::Bench(c) => cmd::bench::run(c).await,
            Command::Kernel(c) => cmd::kernel::run(c),
            Command::Image { nested } => cmd::image(nested),
            Command::Triage(a) => cmd::triage::run(a),
            Command::Run(a) => cmd::run::run(a).await,
            Command::Soak(a) => cmd::soak::run(a).await,
            Command::Fuzz(a) => cmd::fuzz::run(a).await,
            Command::Replay(a) => cmd::replay::run(a).await,
            Command::Report(a) => cmd::report::run(a),
            Command::ReproC(a) => cmd::repro_c::run(a),
            Command::Compare(a) => cmd::compare::run(a).await,
            Command::CiReport(a) => cmd::ci_report::run(a),
            Command::Cover(a) => cmd::cover::run(a),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ccwrig: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
