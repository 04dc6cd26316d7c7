//! Progress of a long offline pass (an export, a verification), and a plain-text bar for a
//! terminal drawn by indicatif: `[#####.....] 12345/100000 events`, redrawn in place with
//! `\r` at most [`REDRAWS_PER_SECOND`] times a second (after a short burst), so a pass over
//! millions of events spends its time on the events, not on the terminal.
//!
//! Whether to draw at all is the caller's choice (a terminal, or `--progress`), never made
//! here; and a bar must never fail the pass it describes.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indicatif::{ProgressDrawTarget, ProgressStyle, TermLike};

/// The most redraws per second once indicatif's initial burst is spent.
pub(crate) const REDRAWS_PER_SECOND: u8 = 10;
/// Characters between the brackets.
const WIDTH: usize = 30;
/// The width indicatif pads each frame to, so that a frame erases the one before it.
const COLUMNS: u16 = 80;

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

/// The bar, drawn on `out` whether or not it is a terminal (`--progress` into a pipe or a
/// file gets the same frames).
pub struct ProgressBar<W: Write + Send + 'static> {
    bar: indicatif::ProgressBar,
    out: Arc<Mutex<W>>,
}

impl<W: Write + Send + 'static> ProgressBar<W> {
    /// A bar counting `unit` (e.g. `"events"`).
    pub fn new(out: W, unit: &'static str) -> Self {
        Self::styled(out, style(unit, false))
    }

    /// A bar counting `unit` that also shows the time left at the rate so far
    /// (`… ETA 1m 20s`), for a pass that runs at a pace of its own (the KEK rewrap job).
    pub fn with_eta(out: W, unit: &'static str) -> Self {
        Self::styled(out, style(unit, true))
    }

    fn styled(out: W, style: ProgressStyle) -> Self {
        let out = Arc::new(Mutex::new(out));
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(Line(Arc::clone(&out))), REDRAWS_PER_SECOND);
        let bar = indicatif::ProgressBar::with_draw_target(None, target).with_style(style);
        Self { bar, out }
    }
}

impl<W: Write + Send + 'static> Progress for ProgressBar<W> {
    fn start(&mut self, total: u64) {
        // Length first, so that the first frame already shows the total.
        self.bar.set_length(total);
        if self.bar.position() != 0 {
            self.bar.set_position(0);
        }
    }

    fn advance_to(&mut self, done: u64) {
        if done <= self.bar.position() {
            return;
        }
        if self.bar.length().is_some_and(|total| done > total) {
            // Items that arrived after the total was counted extend the total rather than
            // overflow the bar; both change in one update, so no frame shows one without
            // the other.
            self.bar.update(|state| {
                state.set_len(done);
                state.set_pos(done);
            });
        } else {
            self.bar.set_position(done);
        }
    }

    fn finish(&mut self) {
        // Draws the last frame whatever the rate limit and leaves it on screen, at the
        // position reached: a pass that stopped early does not show as complete.
        self.bar.abandon();
        let mut out = lock(&self.out);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

fn style(unit: &str, eta: bool) -> ProgressStyle {
    // `unit` is one of our own words ("events"); braces in it would read as a placeholder.
    let eta = if eta { " ETA {eta}" } else { "" };
    let template = format!("[{{bar:{WIDTH}}}] {{pos}}/{{len}} {unit}{eta}");
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#.")
}

fn lock<W>(out: &Mutex<W>) -> MutexGuard<'_, W> {
    out.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A one-line "terminal" over any writer: `\r` goes back to the start of the line and
/// nothing else moves the cursor, so the frames need no terminal escape codes. Write errors
/// are ignored: a bar must never fail the pass it describes.
struct Line<W>(Arc<Mutex<W>>);

impl<W> fmt::Debug for Line<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Line")
    }
}

impl<W: Write + Send> TermLike for Line<W> {
    fn width(&self) -> u16 {
        COLUMNS
    }

    fn move_cursor_up(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _n: usize) -> io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        let mut out = lock(&self.0);
        let _ = out.write_all(s.as_bytes());
        let _ = out.write_all(b"\n");
        Ok(())
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        let _ = lock(&self.0).write_all(s.as_bytes());
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.write_str("\r")
    }

    fn flush(&self) -> io::Result<()> {
        let _ = lock(&self.0).flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames drawn so far, without their padding, and whether the output ends a line.
    fn frames(bar: &ProgressBar<Vec<u8>>) -> (Vec<String>, bool) {
        let text = String::from_utf8(lock(&bar.out).clone()).unwrap();
        let frames = text
            .split('\r')
            .map(str::trim_end)
            .filter(|frame| !frame.is_empty())
            .map(str::to_owned)
            .collect();
        (frames, text.ends_with('\n'))
    }

    fn last_frame(total: u64, done: u64) -> String {
        let mut bar = ProgressBar::new(Vec::new(), "events");
        bar.start(total);
        bar.advance_to(done);
        bar.finish();
        frames(&bar).0.pop().unwrap()
    }

    #[test]
    fn a_frame_shows_the_share_done_and_the_counts() {
        assert_eq!(last_frame(100, 0), "[..............................] 0/100 events");
        assert_eq!(last_frame(100, 50), "[###############...............] 50/100 events");
        assert_eq!(last_frame(100, 100), "[##############################] 100/100 events");
        assert_eq!(last_frame(0, 0), format!("[{}] 0/0 events", "#".repeat(30)));
        // Events written while the pass ran stretch the total.
        assert_eq!(last_frame(100, 120), format!("[{}] 120/120 events", "#".repeat(30)));
    }

    #[test]
    fn frames_are_redrawn_in_place_and_the_last_one_ends_the_line() {
        let mut bar = ProgressBar::new(Vec::new(), "events");
        bar.start(3);
        bar.advance_to(1);
        bar.advance_to(3);
        bar.finish();
        let text = String::from_utf8(lock(&bar.out).clone()).unwrap();
        assert!(text.contains("\r["), "{text:?}");
        assert!(!text.trim_end().contains('\n'), "one line: {text:?}");
        assert_eq!(text.lines().count(), 1, "{text:?}");
        let (frames, ends_line) = frames(&bar);
        assert_eq!(
            frames.last().map(String::as_str),
            Some("[##############################] 3/3 events")
        );
        assert!(ends_line);
    }

    #[test]
    fn a_fast_pass_draws_a_bounded_number_of_frames_and_always_the_last() {
        // Before the bar: its rate limiter counts from its creation.
        let started = std::time::Instant::now();
        let mut bar = ProgressBar::new(Vec::new(), "events");
        bar.start(200_000);
        for done in 1..=200_000 {
            bar.advance_to(done);
        }
        bar.finish();
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap();
        let (frames, _) = frames(&bar);
        // indicatif's burst of 20, then one per 100 ms, plus the forced last frame.
        let most = 20 + 1 + usize::try_from(elapsed_ms / 100).unwrap() + 1;
        assert!(frames.len() <= most, "{} frames in {elapsed_ms} ms", frames.len());
        assert!(frames.len() < 1000, "{} frames", frames.len());
        assert!(frames.last().unwrap().ends_with("] 200000/200000 events"), "{frames:?}");
    }

    #[test]
    fn a_position_never_moves_back() {
        let mut bar = ProgressBar::new(Vec::new(), "events");
        bar.start(10);
        bar.advance_to(7);
        bar.advance_to(3);
        bar.finish();
        assert!(frames(&bar).0.last().unwrap().ends_with("] 7/10 events"));
    }
}
