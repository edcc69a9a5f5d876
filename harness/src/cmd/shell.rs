//! `ccwrig shell`: an interactive shell on the guest console, for poking at a kernel by hand.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use ccwrig::vm;

use super::VmArgs;

/// Ctrl-]: the same escape as telnet's, unlikely to be needed inside the guest.
const ESCAPE: u8 = 0x1d;

#[derive(clap::Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Open QEMU's gdbstub on a free loopback port and print the gdb command line (with the
    /// build's vmlinux, relocated to where the kernel runs). The guest keeps running until
    /// gdb attaches.
    #[arg(long)]
    pub gdb: bool,
}

/// Puts the terminal into raw mode and restores it on drop (also on error paths).
struct RawTerminal {
    saved: Option<rustix::termios::Termios>,
}

impl RawTerminal {
    fn enter() -> RawTerminal {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return RawTerminal { saved: None };
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        RawTerminal { saved: Some(saved) }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(s) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                s,
            );
        }
    }
}

pub async fn run(a: ShellArgs) -> anyhow::Result<std::process::ExitCode> {
    let (dir, mut cmd) = a.vm.prepare("shell", "ccwrig.shell=1")?;
    let bz = cmd.kernel.clone();
    let gdb_port = match a.gdb {
        true => Some(
            ccwrig::symbolize::gdb::free_port().context("no free loopback port for the gdbstub")?,
        ),
        false => None,
    };
    if let Some(p) = gdb_port {
        cmd = cmd.gdb(p);
    }
    let ready = vm::ready_timeout(a.vm.kernel.request().slowdown());
    let (mut vm, hello, took) = vm::boot(cmd, &ccwrig::rundir::RunDir::at(&dir), ready)
        .await
        .with_context(|| format!("boot failed; artifacts in {}", dir.display()))?;
    eprintln!(
        "ccwrig: kernel {} ready in {} ms; console log {}; Ctrl-] quits\r",
        hello.kernel_release,
        took.as_millis(),
        dir.join(ccwrig::rundir::Artifact::Console.file_name())
            .display()
    );
    if let Some(port) = gdb_port {
        eprintln!("ccwrig: gdbstub on 127.0.0.1:{port}; attach with:\r");
        eprintln!("  {}\r", gdb_line(&vm, &bz, port).await);
    }
    print!("{}", vm.console.text());
    vm.console.set_echo(true);
    let writer = vm.console.writer()?;
    let raw = RawTerminal::enter();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    // stdin has no async API worth the complexity here; a thread forwards keystrokes.
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut w = writer;
        let mut buf = [0u8; 256];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(pos) = buf[..n].iter().position(|&b| b == ESCAPE) {
                let _ = std::io::Write::write_all(&mut w, &buf[..pos]);
                break;
            }
            if std::io::Write::write_all(&mut w, &buf[..n]).is_err() {
                break;
            }
        }
        let _ = tx.blocking_send(());
    });
    loop {
        tokio::select! {
            _ = rx.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => if !vm.is_running() { break },
        }
    }
    drop(raw);
    vm.console.set_echo(false);
    let _ = vm.shutdown(Duration::from_secs(10)).await;
    eprintln!("\nccwrig: guest stopped; run directory {}", dir.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// The gdb command for this guest; the KASLR offset comes from the guest's /proc/kallsyms.
async fn gdb_line(vm: &vm::Vm, bz: &std::path::Path, port: u16) -> String {
    use ccwrig::symbolize::gdb;
    let rec = ccwrig::kernel::KernelRecord::of_bzimage(bz);
    let Some(vmlinux) = rec.vmlinux else {
        return format!("{} -q -ex 'set architecture s390:64-bit' -ex 'target remote 127.0.0.1:{port}'  (no vmlinux next to {})", gdb::debugger(), bz.display());
    };
    let symbols = std::fs::read(&vmlinux)
        .ok()
        .and_then(|d| ccwrig::symbolize::Symbols::parse(&d).ok());
    let offset = match &symbols {
        Some(s) => kaslr_offset(vm, s).await,
        None => None,
    };
    gdb::command_line(gdb::debugger(), &vmlinux, port, offset)
}

/// Where the running kernel sits against vmlinux's link addresses (`_stext` in the guest's
/// /proc/kallsyms against the symbol table).
pub async fn kaslr_offset(vm: &vm::Vm, symbols: &ccwrig::symbolize::Symbols) -> Option<u64> {
    let op = ccwrig::proto::Op::Exec {
        argv: vec!["grep".into(), " _stext$".into(), "/proc/kallsyms".into()],
    };
    let (_, r) = vm.agent.request("shell", op, 5000).await.ok()?;
    let kallsyms = r.data.get("stdout")?.as_str()?;
    ccwrig::symbolize::gdb::kaslr_offset(symbols, kallsyms)
}
