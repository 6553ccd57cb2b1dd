//! Restarts from a checkpoint, told apart from ordinary progress: a run that resumes logs a
//! step lower than the highest it reached, in the same file or in the file that replaced it
//! (rotated or truncated by the restarted job). Counting them, and the steps they redo, says
//! what the restarts cost.
//!
//! The rules, each chosen so that a healthy run never counts a restart:
//! - A restart is a step more than [`RESTART_TOLERANCE_STEPS`] below the highest step of the
//!   current attempt, once that attempt has advanced. A drop of one step is not one: two
//!   ranks printing the same bar or record a step apart would read as endless restarts.
//! - Only the training bar and step-carrying records give steps: `evaluate()`'s bars are
//!   left out before this point (nested bars by the parser, other totals by the run state),
//!   and an eval record carries the step it was taken at, never a lower one.
//! - A training bar with a different total that starts at 0 (a second `train()` in the same
//!   process) is a new training, not a resumed one: it starts a fresh attempt without
//!   counting a restart. A bar of the same total that starts again is the restarted job's.
//! - A bar's opening frame (`0/600`) is not a step: a resumed bar then jumps to the resume
//!   step. Hugging Face's `ProgressCallback` draws the bar after each step, by the step count,
//!   so the first advance after an opening frame shows the step after the one resumed from:
//!   the attempt resumed one step before it. From records, the attempt resumed at the first
//!   step it logs (up to one logging interval later than the checkpoint's step).
//!   A bar of the same length that opens again is a restart even when it then resumes at
//!   the highest step reached (a checkpoint saved just before the job died, nothing redone).
//! - Steps redone are the highest step before the restart minus the step resumed at.
//! - The bar's rate right after a restart is computed over the jump (`304/600
//!   [00:00<00:00, 2853.35it/s]`): it is not reported until the bar has advanced
//!   [`RATE_SETTLE_ADVANCES`] times past the frame that showed the restart.

/// A step drop of at most this many steps is not a restart.
pub const RESTART_TOLERANCE_STEPS: f64 = 1.0;

/// Advances of the training bar after a restart whose rates are not reported.
pub const RATE_SETTLE_ADVANCES: u8 = 2;

/// The current attempt of a run and what its restarts cost.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// Restarts seen (`training_run_restarts_total`).
    pub restarts: u64,
    /// Steps redone over all restarts (`training_steps_redone_total`).
    pub steps_redone: f64,
    /// When the current attempt's first line was read (unix seconds).
    pub started: Option<f64>,
    /// The highest step of the current attempt, and its first.
    high: Option<f64>,
    first: Option<f64>,
    /// When a new attempt may have begun (a bar's opening frame, a replaced file's first
    /// line): its start if a restart follows.
    pub(super) candidate_start: Option<f64>,
    /// The file was rotated or truncated since the last line.
    pub(super) file_changed: bool,
    /// The training bar's last frame was an opening one, after the attempt had a step.
    bar_reset: bool,
    /// The training bar's last count, and the advances whose rates are still held back.
    bar_n: Option<u64>,
    rate_hold: u8,
}

impl Attempt {
    /// A training bar of another length starts: a new training in the same process.
    pub fn new_training(&mut self) {
        self.high = None;
        self.first = None;
        self.bar_reset = false;
        self.candidate_start = None;
    }

    /// The steps seen so far were not steps (Lightning's epoch bars, found out at the first
    /// record): forgets them and the restarts they seemed to show; the start stays.
    pub fn void(&mut self) {
        *self = Attempt {
            started: self.started,
            ..Attempt::default()
        };
    }

    /// A training bar frame with count `n` read at `now`, before its step is applied.
    pub fn bar_frame(&mut self, n: u64, now: f64) {
        if n == 0 && self.high.is_some_and(|h| h > 0.0) {
            self.bar_reset = true;
            self.candidate_start.get_or_insert(now);
        }
    }

    /// A step from the training bar (`bar`) or from a record, read at `now`.
    pub fn step(&mut self, step: f64, now: f64, bar: bool) {
        let opening = bar && step == 0.0;
        if opening && self.bar_reset {
            // wait for the bar's first advance: it shows where the attempt resumed
            return;
        }
        let after_reset = bar && std::mem::take(&mut self.bar_reset);
        let (Some(high), Some(first)) = (self.high, self.first) else {
            self.high = Some(step);
            self.first = Some(step);
            return;
        };
        // a bar of the same length that opened again is a restart even when it resumes at
        // the highest step (a checkpoint saved just before the job died): nothing redone
        if high > first && (after_reset || high - step > RESTART_TOLERANCE_STEPS) {
            let resumed = if after_reset {
                (step - 1.0).max(0.0)
            } else {
                step
            };
            self.restarts += 1;
            self.steps_redone += (high - resumed).max(0.0);
            self.started = Some(self.candidate_start.take().unwrap_or(now));
            self.high = Some(step);
            self.first = Some(resumed);
            self.rate_hold = RATE_SETTLE_ADVANCES + 1;
            self.bar_n = None;
        } else if step > high {
            self.high = Some(step);
            self.candidate_start = None;
        }
    }

    /// Whether the rate of the training bar frame with count `n` may be reported (after its
    /// step is applied).
    pub fn bar_rate_ok(&mut self, n: u64) -> bool {
        if self.rate_hold > 0 && self.bar_n.is_none_or(|last| n > last) {
            self.rate_hold -= 1;
        }
        self.bar_n = Some(n);
        self.rate_hold == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drop_after_advancing_is_a_restart_and_a_one_step_jitter_is_not() {
        let mut a = Attempt::default();
        for s in [10.0, 20.0, 30.0, 29.0, 30.0, 40.0] {
            a.step(s, 1.0, false);
        }
        assert_eq!(a.restarts, 0);
        a.step(20.0, 2.0, false);
        assert_eq!(
            (a.restarts, a.steps_redone, a.started),
            (1, 20.0, Some(2.0))
        );
        // the new attempt's own progress and a second restart add up
        a.step(45.0, 3.0, false);
        a.step(40.0, 4.0, false);
        assert_eq!((a.restarts, a.steps_redone), (2, 25.0));
    }

    #[test]
    fn a_resumed_bar_jumps_from_its_opening_frame_and_holds_its_rate() {
        let mut a = Attempt::default();
        let frame = |a: &mut Attempt, n: u64, now: f64| {
            a.bar_frame(n, now);
            a.step(n as f64, now, true);
            a.bar_rate_ok(n)
        };
        assert!(frame(&mut a, 0, 1.0));
        for n in 1..=340 {
            assert!(frame(&mut a, n, 2.0));
        }
        // the restarted job: an opening frame, then the jump past checkpoint 300
        assert!(frame(&mut a, 0, 10.0));
        assert_eq!(a.restarts, 0);
        assert!(!frame(&mut a, 301, 11.0));
        assert_eq!(
            (a.restarts, a.steps_redone, a.started),
            (1, 40.0, Some(10.0))
        );
        // a redraw at the same count holds nothing more; two advances release the rate
        assert!(!frame(&mut a, 301, 11.5));
        assert!(!frame(&mut a, 302, 12.0));
        assert!(frame(&mut a, 303, 13.0));
        assert_eq!(a.restarts, 1);
    }

    #[test]
    fn a_bar_that_opens_again_at_its_highest_step_is_a_restart_with_nothing_redone() {
        let mut a = Attempt::default();
        for n in [0u64, 100, 200, 300, 0, 301, 302] {
            a.bar_frame(n, 1.0);
            a.step(n as f64, 1.0, true);
        }
        assert_eq!((a.restarts, a.steps_redone), (1, 0.0));
    }

    #[test]
    fn a_new_training_bar_is_not_a_restart() {
        let mut a = Attempt::default();
        for n in [0u64, 5, 10] {
            a.bar_frame(n, 1.0);
            a.step(n as f64, 1.0, true);
        }
        a.new_training();
        for n in [0u64, 1, 2] {
            a.bar_frame(n, 2.0);
            a.step(n as f64, 2.0, true);
        }
        assert_eq!((a.restarts, a.steps_redone), (0, 0.0));
    }
}
