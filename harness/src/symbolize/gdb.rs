//! Attaching gdb to a guest through QEMU's gdbstub: a free loopback port, the KASLR offset
//! (s390 relocates the kernel away from vmlinux's link addresses), and the exact command.

use super::Symbols;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runtime minus link-time address of `_stext`, from a `/proc/kallsyms` text.
pub fn kaslr_offset(symbols: &Symbols, kallsyms: &str) -> Option<u64> {
    let runtime = kallsyms.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let (addr, _kind, name) = (it.next()?, it.next()?, it.next()?);
        (name == "_stext")
            .then(|| u64::from_str_radix(addr, 16).ok())
            .flatten()
    })?;
    let (link, _) = symbols.lookup("_stext", None)?;
    Some(runtime.wrapping_sub(link.addr))
}

/// The first of `names` that is a file in a directory of `PATH`.
pub fn first_on_path(names: &[&'static str]) -> Option<&'static str> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .copied()
        .find(|n| std::env::split_paths(&path).any(|d| d.join(n).is_file()))
}

/// The debugger that can debug s390x here: Debian's `gdb-multiarch` (plain `gdb` is built
/// for the host architecture only), else a cross gdb.
pub fn debugger() -> &'static str {
    first_on_path(&["gdb-multiarch", "s390x-linux-gnu-gdb"]).unwrap_or("gdb-multiarch")
}

/// The command line that attaches to the gdbstub with symbols at their runtime addresses.
pub fn command_line(
    gdb: &str,
    vmlinux: &std::path::Path,
    port: u16,
    offset: Option<u64>,
) -> String {
    let symbols = match offset {
        Some(o) if o != 0 => format!("-ex 'symbol-file -o {o:#x} {}'", vmlinux.display()),
        _ => format!("-ex 'symbol-file {}'", vmlinux.display()),
    };
    format!(
        "{gdb} -q -ex 'set architecture s390:64-bit' {symbols} -ex 'target remote 127.0.0.1:{port}'"
    )
}
