//! Time for the background loops: the wall clock in unix seconds ([`unix_now`]), and the
//! [`Waker`] every loop (tailer, collectors, attribution) waits on between two cycles.
//!
//! In production a waker sleeps until the deadline the loop asks for, and a stop (or a
//! [`Waker::notify`]) ends the sleep at once. A test makes a manual one
//! ([`Waker::manual`], after mtail's `internal/waker` test waker): a wait then lasts until
//! the test calls [`Waker::wake`], whatever the deadline, and `wake(n)` returns once the loop
//! has run its `n` cycles and waits again. The number of waits begun ([`Waker::cycles`]) is
//! the positive witness a test waits on before it asserts that something did not happen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a loop waits on: a stop flag, and a sleep that a stop or a notification ends.
#[derive(Debug, Default)]
pub struct Waker {
    stopped: AtomicBool,
    /// Manual: waits end only at [`Waker::wake`].
    manual: bool,
    state: Mutex<Ticks>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Ticks {
    /// Waits begun so far: the cycles the loop has completed.
    waits: u64,
    /// Whether the loop is in a wait now.
    waiting: bool,
    /// Wake-ups granted and not yet taken (manual).
    granted: u64,
    /// A notification came outside a wait: the next wait ends at once (as a thread's park
    /// token).
    notified: bool,
}

impl Waker {
    /// The production waker: waits last until their deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A test waker: a wait lasts until [`Waker::wake`] or a stop, whatever its deadline.
    pub fn manual() -> Self {
        Waker {
            manual: true,
            ..Self::default()
        }
    }

    /// Whether this is a test's manual waker.
    pub fn is_manual(&self) -> bool {
        self.manual
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Stops the loop: its current and later waits return false at once.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let _guard = self.lock();
        self.changed.notify_all();
    }

    /// Ends the current wait, or the next one if none is under way (production; a manual
    /// waker's waits end only at [`Waker::wake`]).
    pub fn notify(&self) {
        if self.manual {
            return;
        }
        let mut s = self.lock();
        s.notified = true;
        self.changed.notify_all();
    }

    /// Waits until `deadline` (a manual waker: until [`Waker::wake`]); false if the stop came
    /// first.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        s.waits += 1;
        s.waiting = true;
        self.changed.notify_all();
        let woken = loop {
            if self.is_stopped() {
                break false;
            }
            if self.manual {
                if s.granted > 0 {
                    s.granted -= 1;
                    break true;
                }
                s = self.wait(s, None);
                continue;
            }
            if std::mem::take(&mut s.notified) {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break true;
            }
            s = self.wait(s, Some(deadline - now));
        };
        s.waiting = false;
        woken
    }

    /// Waits begun so far, which is the cycles the loop has completed.
    pub fn cycles(&self) -> u64 {
        self.lock().waits
    }

    /// Manual: waits for the loop to reach a wait, lets it run `n` more cycles and returns
    /// once it waits again. False if it stopped, or if `timeout` passed first.
    pub fn wake(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while !(s.waiting && s.granted == 0) {
            match self.wait_before(s, deadline) {
                Some(g) => s = g,
                None => return false,
            }
        }
        let target = s.waits + n;
        s.granted += n;
        self.changed.notify_all();
        while !(s.waits >= target && s.waiting) {
            match self.wait_before(s, deadline) {
                Some(g) => s = g,
                None => return false,
            }
        }
        true
    }

    /// Waits until the loop has completed `n` cycles in all and is in a wait. False if it
    /// stopped, or if `timeout` passed first.
    pub fn wait_cycles(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while !(s.waits >= n && s.waiting) {
            match self.wait_before(s, deadline) {
                Some(g) => s = g,
                None => return false,
            }
        }
        true
    }

    fn wait_before<'a>(
        &'a self,
        s: MutexGuard<'a, Ticks>,
        deadline: Instant,
    ) -> Option<MutexGuard<'a, Ticks>> {
        let now = Instant::now();
        if self.is_stopped() || now >= deadline {
            return None;
        }
        Some(self.wait(s, Some(deadline - now)))
    }

    fn wait<'a>(
        &'a self,
        s: MutexGuard<'a, Ticks>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, Ticks> {
        match timeout {
            Some(t) => match self.changed.wait_timeout(s, t) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            },
            None => self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ticks> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    const T: Duration = Duration::from_secs(10);

    /// A loop that counts its cycles, waiting an hour between two.
    fn spawn(w: &Arc<Waker>) -> (Arc<AtomicU64>, std::thread::JoinHandle<()>) {
        let (w, count) = (w.clone(), Arc::new(AtomicU64::new(0)));
        let c = count.clone();
        let t = std::thread::spawn(move || loop {
            c.fetch_add(1, Ordering::SeqCst);
            if !w.sleep_until(Instant::now() + Duration::from_secs(3600)) {
                return;
            }
        });
        (count, t)
    }

    #[test]
    fn a_manual_waker_runs_exactly_the_cycles_asked_for() {
        let w = Arc::new(Waker::manual());
        let (count, t) = spawn(&w);
        assert!(w.wait_cycles(1, T));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(w.wake(3, T));
        assert_eq!(count.load(Ordering::SeqCst), 4);
        assert_eq!(w.cycles(), 4);
        w.notify(); // no effect on a manual waker
        assert!(w.wake(1, T));
        assert_eq!(count.load(Ordering::SeqCst), 5);
        w.stop();
        t.join().unwrap();
        assert!(!w.wake(1, T));
    }

    #[test]
    fn a_stop_or_a_notification_ends_a_production_wait_at_once() {
        let w = Arc::new(Waker::new());
        let started = Instant::now();
        w.notify(); // before the wait: the wait ends at once all the same
        assert!(w.sleep_until(Instant::now() + Duration::from_secs(3600)));
        let (count, t) = spawn(&w);
        assert!(w.wait_cycles(1, T));
        w.notify();
        assert!(w.wait_cycles(3, T)); // this test's own wait counts too
        assert_eq!(count.load(Ordering::SeqCst), 2);
        w.stop();
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(!w.sleep_until(Instant::now()), "stopped");
        let short = Waker::new();
        let before = Instant::now();
        assert!(short.sleep_until(before + Duration::from_millis(20)));
        assert!(before.elapsed() >= Duration::from_millis(20));
    }
}
