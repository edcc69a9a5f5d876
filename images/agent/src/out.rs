//! The one writer of the agent port. Every message goes through this channel so lines never
//! interleave; the channel is bounded so a host that never connects (writes to an unconnected
//! virtio port block) costs bounded memory — producers then wait, and the kernel's own
//! buffers (trace ring, kmsg) hold the rest.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use ccwrig_proto::AgentMsg;

/// Lines in flight. Small enough that creating the channel at boot is cheap (its slots are
/// initialised up front: 8192 of them took ~5 ms under TCG), large enough that producers
/// rarely wait for the writer.
const QUEUE: usize = 1024;

pub enum Out {
    Line(String),
    /// Answered once every line queued before it has been written.
    Flush(mpsc::Sender<()>),
}

#[derive(Clone)]
pub struct Outbox(SyncSender<Out>);

impl Outbox {
    pub fn new() -> (Outbox, Receiver<Out>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        (Outbox(tx), rx)
    }

    pub fn send(&self, m: &AgentMsg) {
        let _ = self.0.send(Out::Line(ccwrig_proto::encode(m)));
    }

    /// For messages that are worthless when late (heartbeats): dropped when the queue is full.
    pub fn offer(&self, m: &AgentMsg) -> bool {
        !matches!(
            self.0.try_send(Out::Line(ccwrig_proto::encode(m))),
            Err(TrySendError::Full(_))
        )
    }

    pub fn note(&self, source: &str, text: impl Into<String>) {
        self.send(&AgentMsg::Note {
            source: source.into(),
            text: text.into(),
        });
    }

    /// Waits (at most `timeout`) until everything queued so far is written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.0.send(Out::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

/// Writes queued lines to the port until the channel closes. A failed write is retried (after
/// a pause, or on the renewed port when its device came back); the line is not dropped.
pub fn writer(port: std::sync::Arc<crate::port::Port>, rx: Receiver<Out>) {
    for item in rx {
        match item {
            Out::Line(line) => port.write_all(line.as_bytes()),
            Out::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
