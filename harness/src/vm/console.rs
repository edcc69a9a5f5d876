//! The guest's serial (SCLP) console.
//!
//! One reader thread owns the socket's read side and, for every chunk, appends it to
//! `console.log` (flushed at once: when the harness is killed the log must already be on disk),
//! to an in-memory copy the oracles read, and optionally to our stdout (`ccwrig shell`).
//!
//! Waiting for console output is a search of that copy from a byte offset taken earlier
//! ([`Console::has`], [`Console::text_since`]): several waiters can look at the same output,
//! and nothing is consumed. Everything the harness does in the guest goes through the agent;
//! the console shell (`ccwrig.shell=1`) is for a human at `ccwrig shell`, not for scripts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Console {
    text: Arc<Mutex<Vec<u8>>>,
    echo: Arc<AtomicBool>,
    writer: UnixStream,
    closed: Arc<AtomicBool>,
}

impl Console {
    /// Starts reading `stream` (the accepted console connection) into `log`, after
    /// `preface`: what a restored guest printed before its snapshot was taken, so the log
    /// reads as one boot's, every byte once.
    pub fn start(
        stream: UnixStream,
        log: crate::rundir::Appender,
        preface: Vec<u8>,
    ) -> Result<Console, ConsoleError> {
        if !preface.is_empty() {
            log.bytes(&preface);
        }
        let text: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(preface));
        let echo = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicBool::new(false));
        let writer = stream.try_clone()?;
        {
            let text = text.clone();
            let echo = echo.clone();
            let closed = closed.clone();
            let mut stream = stream;
            std::thread::Builder::new()
                .name("console".into())
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        log.bytes(chunk);
                        if let Ok(mut t) = text.lock() {
                            t.extend_from_slice(chunk);
                        }
                        if echo.load(Ordering::Relaxed) {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(chunk);
                            let _ = out.flush();
                        }
                    }
                    closed.store(true, Ordering::Relaxed);
                })?;
        }
        Ok(Console {
            text,
            echo,
            writer,
            closed,
        })
    }

    /// Everything the console printed so far, lossily decoded.
    pub fn text(&self) -> String {
        self.text
            .lock()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default()
    }

    /// What the console printed from byte `from` (a [`Console::len`] taken earlier) on, lossily
    /// decoded: the slice is cut from the raw bytes, so no copy of the whole log is made and
    /// replacement characters earlier in it cannot shift the offset.
    pub fn text_since(&self, from: usize) -> String {
        self.text
            .lock()
            .map(|t| String::from_utf8_lossy(&t[from.min(t.len())..]).into_owned())
            .unwrap_or_default()
    }

    /// Whether the console printed `needle` at byte `from` or later.
    pub fn has(&self, from: usize, needle: &str) -> bool {
        if needle.is_empty() {
            return true;
        }
        self.text
            .lock()
            .map(|t| {
                t.get(from.min(t.len())..)
                    .is_some_and(|tail| tail.windows(needle.len()).any(|w| w == needle.as_bytes()))
            })
            .unwrap_or(false)
    }

    pub fn len(&self) -> usize {
        self.text.lock().map(|t| t.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether QEMU closed the console (it exited).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Waits until QEMU closes the console (it exited, so every byte it printed is in), up to
    /// `timeout`; returns whether it did.
    pub async fn wait_closed(&self, timeout: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while !self.is_closed() {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    /// Mirror console output to our stdout from now on.
    pub fn set_echo(&self, on: bool) {
        self.echo.store(on, Ordering::Relaxed);
    }

    /// Types into the console.
    pub fn send(&self, bytes: &[u8]) -> Result<(), ConsoleError> {
        (&self.writer).write_all(bytes)?;
        Ok(())
    }

    /// A clone of the write side, for an interactive passthrough.
    pub fn writer(&self) -> Result<UnixStream, ConsoleError> {
        Ok(self.writer.try_clone()?)
    }
}
