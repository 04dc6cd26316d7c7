//! Progress of a long offline pass (an export, a verification), and a plain-text bar for a
//! terminal. The bar is drawn with `\r` on one line, at most every [`REDRAW_EVERY`], so a
//! pass over millions of events spends its time on the events, not on the terminal.
//!
//! Whether to draw at all is the caller's choice (a terminal, or `--progress`); nothing
//! here looks at the environment.

use std::io::Write;
use std::time::{Duration, Instant};

/// The shortest time between two redraws.
pub const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Characters between the brackets.
const WIDTH: u64 = 30;

/// Told how far a pass has come.
pub trait Progress {
    /// The pass begins; `total` is the expected number of items (more may arrive while it
    /// runs, when a vault is writing).
    fn start(&mut self, total: u64);
    /// `done` items so far (never decreasing).
    fn advance_to(&mut self, done: u64);
    /// The pass ended, completely or not.
    fn finish(&mut self);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _total: u64) {}
    fn advance_to(&mut self, _done: u64) {}
    fn finish(&mut self) {}
}

/// `\r[#####.....] 12345/100000 events`, redrawn in place on `out`. Write errors are
/// ignored: a bar must never fail the pass it describes.
pub struct ProgressBar<W: Write> {
    out: W,
    unit: &'static str,
    total: u64,
    done: u64,
    drawn_at: Option<Instant>,
}

impl<W: Write> ProgressBar<W> {
    /// A bar counting `unit` (e.g. `"events"`).
    pub fn new(out: W, unit: &'static str) -> Self {
        Self {
            out,
            unit,
            total: 0,
            done: 0,
            drawn_at: None,
        }
    }

    /// As [`Progress::advance_to`], at the time `now` (tests pass their own).
    fn advance_at(&mut self, done: u64, now: Instant) {
        self.done = self.done.max(done);
        let due = self
            .drawn_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REDRAW_EVERY);
        if due {
            self.draw(now);
        }
    }

    fn draw(&mut self, now: Instant) {
        let _ = self.out.write_all(render(self.done, self.total, self.unit).as_bytes());
        let _ = self.out.flush();
        self.drawn_at = Some(now);
    }
}

impl<W: Write> Progress for ProgressBar<W> {
    fn start(&mut self, total: u64) {
        self.total = total;
        self.done = 0;
        self.draw(Instant::now());
    }

    fn advance_to(&mut self, done: u64) {
        self.advance_at(done, Instant::now());
    }

    fn finish(&mut self) {
        self.draw(Instant::now());
        let _ = self.out.write_all(b"\n");
        let _ = self.out.flush();
    }
}

/// One frame of the bar. Items that arrived after the total was counted extend the total
/// rather than overflow the bar.
fn render(done: u64, total: u64, unit: &str) -> String {
    let total = total.max(done);
    let filled = done.saturating_mul(WIDTH).checked_div(total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
    format!("\r[{bar}] {done}/{total} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shows_the_share_done_and_the_counts() {
        assert_eq!(
            render(0, 100, "events"),
            "\r[..............................] 0/100 events"
        );
        assert_eq!(
            render(50, 100, "events"),
            "\r[###############...............] 50/100 events"
        );
        assert_eq!(
            render(100, 100, "events"),
            "\r[##############################] 100/100 events"
        );
        assert_eq!(render(0, 0, "events"), format!("\r[{}] 0/0 events", "#".repeat(30)));
        // Events written while the pass ran stretch the total.
        assert_eq!(
            render(120, 100, "events"),
            format!("\r[{}] 120/120 events", "#".repeat(30))
        );
    }

    #[test]
    fn the_bar_is_redrawn_at_most_every_tenth_of_a_second_and_always_at_the_end() {
        let mut bar = ProgressBar::new(Vec::new(), "events");
        bar.start(1000);
        let t0 = bar.drawn_at.unwrap();
        let ms = Duration::from_millis;
        for (done, at) in [(10, 10), (20, 99), (30, 100), (40, 150), (50, 250), (60, 260)] {
            bar.advance_at(done, t0 + ms(at));
        }
        bar.finish();

        let text = String::from_utf8(bar.out).unwrap();
        let counts: Vec<&str> = text
            .split('\r')
            .filter(|frame| !frame.is_empty())
            .map(|frame| frame.split(' ').nth(1).unwrap_or_default().trim_end())
            .collect();
        assert_eq!(counts, vec!["0/1000", "30/1000", "50/1000", "60/1000"], "{text:?}");
        assert!(text.ends_with("60/1000 events\n"), "{text:?}");
    }
}
