//! Progress for people: a bar on a terminal, a plain line every few seconds otherwise (SSM
//! captures stderr), nothing with `--no-progress`. Reads the pipeline's counters from its own
//! thread, so the pipeline never waits on the display.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pipeline::Control;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// One line every `interval` (stderr is a file or pipe).
    Lines(Duration),
    /// Silent.
    Off,
}

impl ProgressMode {
    /// Picks the mode for this process: bar on a terminal, lines otherwise.
    pub fn detect(disabled: bool) -> Self {
        if disabled {
            Self::Off
        } else if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Lines(Duration::from_secs(10))
        }
    }
}

/// A running progress display; stops (and prints a final state) when dropped.
#[derive(Debug)]
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Human-readable bytes (binary units).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {name}")
    }
}

impl Progress {
    /// Starts showing progress of `label` (total raw bytes `total`, if known).
    pub fn start(
        mode: ProgressMode,
        label: String,
        total: Option<u64>,
        control: Arc<Control>,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&done);
        let thread = match mode {
            ProgressMode::Off => None,
            ProgressMode::Bar => Some(std::thread::spawn(move || {
                bar(&label, total, &control, &stop)
            })),
            ProgressMode::Lines(every) => Some(std::thread::spawn(move || {
                lines(&label, total, &control, &stop, every)
            })),
        };
        Self { done, thread }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bar(label: &str, total: Option<u64>, control: &Control, done: &AtomicBool) {
    let pb = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::no_length(),
    };
    pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(label.to_owned());
    while !done.load(Ordering::SeqCst) {
        pb.set_position(control.raw_read.load(Ordering::Relaxed));
        pb.set_message(format!(
            "→ {}",
            human_bytes(control.compressed_written.load(Ordering::Relaxed))
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    pb.set_position(control.raw_read.load(Ordering::Relaxed));
    pb.abandon();
}

fn lines(label: &str, total: Option<u64>, control: &Control, done: &AtomicBool, every: Duration) {
    let start = Instant::now();
    let mut next = start + every;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next += every;
        let read = control.raw_read.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let rate = read as f64 / secs;
        let pct = total
            .filter(|&t| t > 0)
            .map(|t| format!(" ({:.0}%)", read as f64 * 100.0 / t as f64))
            .unwrap_or_default();
        let of = total
            .map(|t| format!(" of {}", human_bytes(t)))
            .unwrap_or_default();
        let eta = total
            .filter(|_| rate > 0.0)
            .map(|t| format!(", about {:.0} s left", t.saturating_sub(read) as f64 / rate))
            .unwrap_or_default();
        eprintln!(
            "airf-agent: {label}: {}{of}{pct} read, {}/s, {} stored{eta}",
            human_bytes(read),
            human_bytes(rate as u64),
            human_bytes(control.compressed_written.load(Ordering::Relaxed))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_people_say_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(4 << 30), "4.0 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
