//! Where a guest's CPUs spend their time, without perf in the guest: QEMU's gdbstub stops the
//! VM, each vCPU's PSW address is read, the VM goes on; many such samples make a profile.
//! Under TCG this is the only profiler there is, and it sees the kernel as it runs (lockdep,
//! KASAN's checks, the idle loop) without instrumenting it.
//!
//! The client speaks just enough of gdb's remote serial protocol: `qSupported`, `?`, the thread
//! list, `Hg` + `p1` (register 1 of QEMU's s390x description is `pswa`), `c`, and the
//! interrupt byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("gdbstub at 127.0.0.1:{port}: {source}")]
    Io { port: u16, source: std::io::Error },
    #[error("gdbstub at 127.0.0.1:{port}: unexpected reply {reply:?} to {request}")]
    Protocol {
        port: u16,
        request: String,
        reply: String,
    },
}

/// A connection to QEMU's gdbstub that samples PSW addresses. Attaching stops the VM; it runs
/// again between samples and after [`Sampler::detach`] (or drop).
pub struct Sampler {
    port: u16,
    stream: TcpStream,
    buf: Vec<u8>,
    threads: Vec<String>,
    running: bool,
}

impl Sampler {
    /// Attaches and learns the vCPUs. The VM is left running.
    pub fn attach(port: u16) -> Result<Sampler, SampleError> {
        let io = |source| SampleError::Io { port, source };
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut s = Sampler {
            port,
            stream,
            buf: Vec::new(),
            threads: Vec::new(),
            running: false,
        };
        // QEMU stops the VM on attach; it may or may not announce that with a stop packet
        // before the first request, so replies are matched by their form.
        s.send("qSupported")?;
        s.until(|r| r.starts_with("PacketSize"), "qSupported")?;
        s.send("?")?;
        s.until(|r| r.starts_with('T') || r.starts_with('S'), "?")?;
        let mut reply = s.request("qfThreadInfo")?;
        while let Some(list) = reply.strip_prefix('m') {
            s.threads.extend(list.split(',').map(str::to_owned));
            reply = s.request("qsThreadInfo")?;
        }
        if s.threads.is_empty() {
            return Err(s.protocol("qfThreadInfo", &reply));
        }
        s.resume()?;
        Ok(s)
    }

    /// The vCPUs, as the stub numbers them.
    pub fn vcpus(&self) -> usize {
        self.threads.len()
    }

    /// Stops the VM, reads each vCPU's PSW address, and lets it run again.
    pub fn sample(&mut self) -> Result<Vec<u64>, SampleError> {
        self.interrupt()?;
        let mut pcs = Vec::with_capacity(self.threads.len());
        for t in self.threads.clone() {
            let ok = self.request(&format!("Hg{t}"))?;
            if ok != "OK" {
                return Err(self.protocol("Hg", &ok));
            }
            let reg = self.request("p1")?;
            let pc = u64::from_str_radix(&reg, 16).map_err(|_| self.protocol("p1", &reg))?;
            pcs.push(pc);
        }
        self.resume()?;
        Ok(pcs)
    }

    /// Leaves the VM running and closes the connection. QEMU takes any byte that arrives
    /// while the VM runs for an interrupt (the VM stops), so the VM is stopped first and the
    /// detach, which resumes it, is sent to a stopped VM.
    pub fn detach(mut self) -> Result<(), SampleError> {
        if self.running {
            self.interrupt()?;
        }
        let reply = self.request("D")?;
        if reply != "OK" {
            return Err(self.protocol("D", &reply));
        }
        self.running = true;
        Ok(())
    }

    /// Stops the running VM: the interrupt byte, then its stop reply.
    fn interrupt(&mut self) -> Result<(), SampleError> {
        self.stream
            .write_all(&[0x03])
            .map_err(|source| SampleError::Io {
                port: self.port,
                source,
            })?;
        self.running = false;
        self.until(|r| r.starts_with('T') || r.starts_with('S'), "interrupt")
    }

    fn resume(&mut self) -> Result<(), SampleError> {
        // `c` has no reply until the next stop.
        self.send("c")?;
        self.running = true;
        Ok(())
    }

    fn protocol(&self, request: &str, reply: &str) -> SampleError {
        SampleError::Protocol {
            port: self.port,
            request: request.to_owned(),
            reply: reply.to_owned(),
        }
    }

    fn request(&mut self, packet: &str) -> Result<String, SampleError> {
        self.send(packet)?;
        self.packet()
    }

    fn until(&mut self, want: impl Fn(&str) -> bool, request: &str) -> Result<(), SampleError> {
        for _ in 0..16 {
            if want(&self.packet()?) {
                return Ok(());
            }
        }
        Err(self.protocol(request, "(no matching reply in 16 packets)"))
    }

    fn send(&mut self, packet: &str) -> Result<(), SampleError> {
        let sum = packet.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        let framed = format!("${packet}#{sum:02x}");
        self.stream
            .write_all(framed.as_bytes())
            .map_err(|source| SampleError::Io {
                port: self.port,
                source,
            })
    }

    /// The next `$…#xx` packet (acknowledged); `+` acks before it are skipped.
    fn packet(&mut self) -> Result<String, SampleError> {
        loop {
            if let Some(p) = take_packet(&mut self.buf) {
                self.stream
                    .write_all(b"+")
                    .map_err(|source| SampleError::Io {
                        port: self.port,
                        source,
                    })?;
                return Ok(p);
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|source| SampleError::Io {
                    port: self.port,
                    source,
                })?;
            if n == 0 {
                return Err(SampleError::Io {
                    port: self.port,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // A stopped VM would stay stopped: let it go.
        if !self.running {
            let _ = self.send("c");
        }
    }
}

/// Removes and returns the first complete packet's payload from `buf`.
fn take_packet(buf: &mut Vec<u8>) -> Option<String> {
    let start = buf.iter().position(|&b| b == b'$')?;
    let hash = start + buf[start..].iter().position(|&b| b == b'#')?;
    if buf.len() < hash + 3 {
        return None;
    }
    let payload = String::from_utf8_lossy(&buf[start + 1..hash]).into_owned();
    buf.drain(..hash + 3);
    Some(payload)
}

/// How a profile's samples fell.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Functions of the busy samples, most frequent first.
    pub functions: Vec<(String, usize)>,
    /// In the idle loop (`arch_cpu_idle`, `psw_idle`, ...).
    pub idle: usize,
    /// Outside the kernel's text (a vCPU in a wait state shows a lowcore address).
    pub outside: usize,
}

impl Histogram {
    pub fn busy(&self) -> usize {
        self.functions.iter().map(|(_, n)| n).sum()
    }
}

/// Counts `pcs` by function; `symbol` maps a runtime address to its function, or `None`
/// outside the kernel's text.
pub fn histogram<'a>(pcs: &[u64], symbol: impl Fn(u64) -> Option<&'a str>) -> Histogram {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut h = Histogram::default();
    for &pc in pcs {
        match symbol(pc) {
            Some(f) if IDLE.contains(&f) => h.idle += 1,
            Some(f) => *counts.entry(f.to_owned()).or_default() += 1,
            None => h.outside += 1,
        }
    }
    h.functions = counts.into_iter().collect();
    h.functions
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    h
}

/// Where an s390 vCPU with nothing to do sits.
const IDLE: &[&str] = &["arch_cpu_idle", "psw_idle", "psw_idle_exit", "enabled_wait"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_taken_whole_and_acks_before_them_skipped() {
        let mut buf = b"+$T05thread:01;#07+$OK#9a$m0".to_vec();
        assert_eq!(take_packet(&mut buf).as_deref(), Some("T05thread:01;"));
        assert_eq!(take_packet(&mut buf).as_deref(), Some("OK"));
        assert_eq!(take_packet(&mut buf), None);
        buf.extend_from_slice(b"1,02#c6");
        assert_eq!(take_packet(&mut buf).as_deref(), Some("m01,02"));
        assert!(buf.is_empty());
    }

    #[test]
    fn idle_and_outside_addresses_are_apart_and_the_rest_counted() {
        let sym = |pc: u64| match pc {
            1 => Some("arch_cpu_idle"),
            2 => Some("lock_acquire"),
            3 => Some("scan_block"),
            _ => None,
        };
        let h = histogram(&[1, 2, 2, 3, 0x400, 2], sym);
        assert_eq!((h.idle, h.outside, h.busy()), (1, 1, 4));
        assert_eq!(
            h.functions,
            vec![
                ("lock_acquire".to_string(), 3),
                ("scan_block".to_string(), 1)
            ]
        );
    }
}
