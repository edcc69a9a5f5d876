//! Progress of long operations (kernel builds, the agent build, fuzzing campaigns).
//!
//! On a terminal: an indicatif spinner. Anywhere else indicatif draws nothing, which leaves a
//! CI log silent for the 5-7 minutes of a kernel build; there a plain line goes to stderr when
//! a phase starts and then every [`plain_interval`], so the log shows what is running and that
//! it is alive.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain progress line is printed when stderr is not a terminal.
pub const DEFAULT_PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// `CCWRIG_PROGRESS_SECS` overrides the plain interval (a CI that wants a line a minute).
pub const INTERVAL_VAR: &str = "CCWRIG_PROGRESS_SECS";

/// The plain interval: [`INTERVAL_VAR`] when it holds a positive number of seconds.
pub fn plain_interval() -> Duration {
    std::env::var(INTERVAL_VAR)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_PLAIN_INTERVAL)
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

#[derive(Default)]
struct State {
    prefix: String,
    message: String,
}

struct Plain {
    label: String,
    t0: Instant,
    state: Arc<Mutex<State>>,
    sink: Sink,
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

enum Mode {
    Bar(ProgressBar),
    Plain(Plain),
    Hidden,
}

/// A spinner or its plain-line stand-in; see the module documentation.
pub struct Progress {
    mode: Mode,
}

fn line(label: &str, t0: Instant, state: &State) -> String {
    let s = t0.elapsed().as_secs();
    let mut l = format!(
        "{label} [{:02}:{:02}:{:02}]",
        s / 3600,
        (s / 60) % 60,
        s % 60
    );
    for part in [&state.prefix, &state.message] {
        if !part.is_empty() {
            l.push(' ');
            l.push_str(part);
        }
    }
    l
}

fn emit(sink: &Sink, text: &str) {
    if let Ok(mut w) = sink.lock() {
        // Progress is advisory: a closed stderr must not fail the build it describes.
        let _ = writeln!(w, "{text}").and_then(|_| w.flush());
    }
}

impl Progress {
    /// A spinner labelled `label` when stderr is a terminal, plain lines otherwise.
    pub fn start(label: &str) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template =
                format!("{{spinner}} {label} [{{elapsed_precise}}] {{prefix:8}} {{wide_msg}}");
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            Progress {
                mode: Mode::Bar(bar),
            }
        } else {
            Progress::plain_to(label, Box::new(std::io::stderr()), plain_interval())
        }
    }

    /// No output at all.
    pub fn hidden() -> Progress {
        Progress { mode: Mode::Hidden }
    }

    /// Plain lines to `sink`: one now, one per phase change, one every `interval`.
    pub fn plain_to(label: &str, sink: Box<dyn Write + Send>, interval: Duration) -> Progress {
        let sink: Sink = Arc::new(Mutex::new(sink));
        let state = Arc::new(Mutex::new(State::default()));
        let t0 = Instant::now();
        emit(&sink, &format!("{label}: started"));
        let (tx, rx) = mpsc::channel::<()>();
        let ticker = {
            let (label, state, sink) = (label.to_string(), state.clone(), sink.clone());
            std::thread::spawn(move || loop {
                match rx.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {
                        let text = match state.lock() {
                            Ok(s) => line(&label, t0, &s),
                            Err(_) => return,
                        };
                        emit(&sink, &text);
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
        };
        Progress {
            mode: Mode::Plain(Plain {
                label: label.to_string(),
                t0,
                state,
                sink,
                stop: Some(tx),
                ticker: Some(ticker),
            }),
        }
    }

    /// Whether nothing is shown.
    pub fn is_hidden(&self) -> bool {
        matches!(self.mode, Mode::Hidden)
    }

    /// A new phase (`compile`): shown at once, also in plain mode.
    pub fn set_prefix(&self, prefix: &str) {
        match &self.mode {
            Mode::Bar(b) => b.set_prefix(prefix.to_string()),
            Mode::Plain(p) => {
                let text = match p.state.lock() {
                    Ok(mut s) => {
                        s.prefix = prefix.to_string();
                        s.message.clear();
                        line(&p.label, p.t0, &s)
                    }
                    Err(_) => return,
                };
                emit(&p.sink, &text);
            }
            Mode::Hidden => {}
        }
    }

    /// The latest detail (`CC drivers/s390/cio/vfio_ccw_fsm.o`): in plain mode it shows in the
    /// next periodic line.
    pub fn set_message(&self, message: &str) {
        match &self.mode {
            Mode::Bar(b) => b.set_message(message.to_string()),
            Mode::Plain(p) => {
                if let Ok(mut s) = p.state.lock() {
                    s.message = message.to_string();
                }
            }
            Mode::Hidden => {}
        }
    }

    /// [`set_prefix`](Self::set_prefix) and [`set_message`](Self::set_message) at once, shown
    /// as one line in plain mode.
    pub fn phase(&self, prefix: &str, message: &str) {
        match &self.mode {
            Mode::Plain(p) => {
                let text = match p.state.lock() {
                    Ok(mut s) => {
                        s.prefix = prefix.to_string();
                        s.message = message.to_string();
                        line(&p.label, p.t0, &s)
                    }
                    Err(_) => return,
                };
                emit(&p.sink, &text);
            }
            _ => {
                self.set_prefix(prefix);
                self.set_message(message);
            }
        }
    }

    /// A line printed above the spinner (or as is, in plain mode).
    pub fn println(&self, text: &str) {
        match &self.mode {
            Mode::Bar(b) => b.println(text),
            Mode::Plain(p) => emit(&p.sink, text),
            Mode::Hidden => {}
        }
    }

    /// Stops the spinner or the ticker; `message` is printed as `<label>: <message>`.
    pub fn finish(&mut self, message: Option<&str>) {
        match &mut self.mode {
            Mode::Bar(b) => {
                b.finish_and_clear();
                if let Some(m) = message {
                    eprintln!("{m}");
                }
            }
            Mode::Plain(p) => {
                p.stop_ticker();
                if let Some(m) = message {
                    emit(&p.sink, m);
                }
            }
            Mode::Hidden => {}
        }
        self.mode = Mode::Hidden;
    }
}

impl Plain {
    fn stop_ticker(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.ticker.take() {
            // The ticker only formats and writes; it cannot have panicked on our data.
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        match &mut self.mode {
            Mode::Bar(b) if !b.is_finished() => b.finish_and_clear(),
            Mode::Plain(p) => p.stop_ticker(),
            _ => {}
        }
    }
}

/// A progress sink tests can read back (also the kernel build's test).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl Shared {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mode_prints_phases_and_periodic_lines_until_finished() {
        let out = Shared::default();
        let mut p = Progress::plain_to("kernel", Box::new(out.clone()), Duration::from_millis(40));
        p.phase("compile", "make -j2 bzImage");
        p.set_message("CC drivers/s390/cio/vfio_ccw_fsm.o");
        // Wait for periodic lines rather than sleeping a fixed time: a loaded machine may
        // delay the ticker, never skip it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while out.text().matches("vfio_ccw_fsm.o").count() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        p.finish(Some("kernel: built"));
        let after = out.text();
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(out.text(), after, "nothing is printed after finish");

        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines[0], "kernel: started");
        assert!(
            lines[1].starts_with("kernel [00:00:00] compile make -j2 bzImage"),
            "{after}"
        );
        let periodic: Vec<&&str> = lines
            .iter()
            .filter(|l| l.ends_with("compile CC drivers/s390/cio/vfio_ccw_fsm.o"))
            .collect();
        assert!(periodic.len() >= 2, "{after}");
        assert_eq!(lines.last(), Some(&"kernel: built"));
    }

    #[test]
    fn a_new_prefix_clears_the_old_detail_and_hidden_prints_nothing() {
        let out = Shared::default();
        let p = Progress::plain_to("agent", Box::new(out.clone()), Duration::from_secs(3600));
        p.phase("compile", "CC x.o");
        p.set_prefix("link");
        drop(p);
        assert!(
            out.text().ends_with("agent [00:00:00] link\n"),
            "{}",
            out.text()
        );
        let h = Progress::hidden();
        assert!(h.is_hidden());
        h.println("not shown");
    }

    #[test]
    fn the_interval_comes_from_the_environment_when_it_is_a_positive_number() {
        // Only this test touches the variable.
        std::env::set_var(INTERVAL_VAR, "5");
        assert_eq!(plain_interval(), Duration::from_secs(5));
        std::env::set_var(INTERVAL_VAR, "0");
        assert_eq!(plain_interval(), DEFAULT_PLAIN_INTERVAL);
        std::env::set_var(INTERVAL_VAR, "soon");
        assert_eq!(plain_interval(), DEFAULT_PLAIN_INTERVAL);
        std::env::remove_var(INTERVAL_VAR);
        assert_eq!(plain_interval(), DEFAULT_PLAIN_INTERVAL);
    }
}
