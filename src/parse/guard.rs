//! Containment of parser panics: a bug in one parser costs the line it was reading, not the
//! daemon.
//!
//! The parsers read hostile text; they are fuzzed and property-tested not to panic, but a
//! panic that slips through must not blind the node's monitoring (a restart re-reads the log
//! from its start and meets the same line again: a crash loop). [`contain`] runs one parser
//! call under [`std::panic::catch_unwind`]; the caller counts the line as malformed and goes
//! on.
//!
//! Everywhere else a panic stays fatal: [`abort_on_panic_outside_parsers`] installs the hook
//! the binary runs with, which lets a panic unwind only while a thread is inside [`contain`]
//! and aborts the process on any other (a half-dead daemon, a server thread gone and the
//! tailer still running, is worse than a restart by the supervisor).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    /// The thread is inside [`contain`].
    static IN_PARSER: Cell<bool> = const { Cell::new(false) };
    /// What the hook saw of the last contained panic (message and location).
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A parser panicked; the message and, where the hook was installed, the location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParserPanic(pub String);

impl fmt::Display for ParserPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `f`, one parser call on one line, and turns a panic in it into an error.
///
/// The state `f` borrows mutably (a [`super::LineParser`]'s CSV header, say) stays whatever
/// the panic left: every value in it is still a valid one, at worst out of step with the file
/// until the next header or rotation, which is what a malformed line does to it too.
#[inline]
pub fn contain<R>(f: impl FnOnce() -> R) -> Result<R, ParserPanic> {
    let outer = IN_PARSER.with(|c| c.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_PARSER.with(|c| c.set(outer));
    r.map_err(|payload| {
        let seen = LAST_PANIC.with(|l| l.borrow_mut().take());
        ParserPanic(seen.unwrap_or_else(|| message(payload.as_ref()).to_owned()))
    })
}

/// Installs the process's panic policy: a panic inside [`contain`] unwinds to it silently
/// (its caller logs it, once per run, not once per bad line); any other panic prints the
/// usual message and aborts. Call once, first thing in `main`.
pub fn abort_on_panic_outside_parsers() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // `try_with`: a panic while the thread's locals are torn down is not a parser's
        if IN_PARSER.try_with(Cell::get).unwrap_or(false) {
            let text = match info.location() {
                Some(l) => format!("{} at {l}", message(info.payload())),
                None => message(info.payload()).to_owned(),
            };
            let _ = LAST_PANIC.try_with(|last| *last.borrow_mut() = Some(text));
            return;
        }
        default(info);
        std::process::abort();
    }));
}

fn message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic without a message"
    }
}

/// Faults on demand, for the tests that run the real binary: compiled only with the
/// `fault-injection` feature, which only the test build turns on.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use std::sync::OnceLock;

    /// A line holding this variable's value makes the line parser panic.
    pub const PARSER_PANIC_ENV: &str = "GPU_TRAIN_EXPORTER_FAULT_PARSER_PANIC";
    /// A line holding this variable's value panics outside the parsers (the run's state).
    pub const OUTSIDE_PANIC_ENV: &str = "GPU_TRAIN_EXPORTER_FAULT_OUTSIDE_PANIC";

    /// The two needles, read from the environment once; `None` where unset or empty.
    #[inline]
    fn needles() -> &'static [Option<String>; 2] {
        static NEEDLES: OnceLock<[Option<String>; 2]> = OnceLock::new();
        NEEDLES.get_or_init(|| {
            [PARSER_PANIC_ENV, OUTSIDE_PANIC_ENV]
                .map(|var| std::env::var(var).ok().filter(|s| !s.is_empty()))
        })
    }

    fn holds(line: &[u8], needle: &str) -> bool {
        memchr::memmem::find(line, needle.as_bytes()).is_some()
    }

    /// Panics if the line holds the value of [`PARSER_PANIC_ENV`]. Unarmed, it costs a
    /// load and a branch per line, so that a benchmark of the test build measures the
    /// parser users run.
    #[inline]
    pub fn parser(line: &str) {
        if let Some(n) = &needles()[0] {
            if holds(line.as_bytes(), n) {
                panic!("injected parser fault");
            }
        }
    }

    /// Panics if the line holds the value of [`OUTSIDE_PANIC_ENV`].
    #[inline]
    pub fn outside(line: &[u8]) {
        if let Some(n) = &needles()[1] {
            if holds(line, n) {
                panic!("injected fault outside the parsers");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_the_thread_goes_on() {
        let mut state = vec![1];
        let r: Result<(), _> = contain(|| {
            state.push(2);
            panic!("boom {}", state.len());
        });
        assert_eq!(r, Err(ParserPanic("boom 2".into())));
        assert_eq!(state, [1, 2]);
        assert_eq!(contain(|| state.len() * 10), Ok(20));
        // the flag is cleared on the way out, nested calls included
        assert!(!IN_PARSER.with(Cell::get));
        let nested = contain(|| {
            let inner = contain(|| -> u8 { panic!("inner") });
            assert!(IN_PARSER.with(Cell::get));
            inner
        });
        assert_eq!(nested, Ok(Err(ParserPanic("inner".into()))));
        assert!(!IN_PARSER.with(Cell::get));
    }

    #[test]
    fn payloads_that_are_not_strings() {
        let r = contain(|| std::panic::panic_any(7u32));
        assert_eq!(r, Err(ParserPanic("a panic without a message".into())));
    }
}
