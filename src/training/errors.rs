//! A run's crash and error events: what [`crate::parse::events`] finds in its lines,
//! counted, and which of them is the cause of the run's latest crash (the root cause wins
//! over the cascade that follows it).

use super::RunState;
use crate::parse::events::{self, EventKind, Found};

/// Longest error message kept, in bytes (it is a label value).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 200;
/// Ranks whose first error of a crash is remembered.
const MAX_CRASH_RANKS: usize = 256;
/// Event kinds user rules may add, per run.
const MAX_RULE_EVENTS: usize = 32;

/// An error event taken as the cause of a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    /// The event kind: a well-known one's name or a user rule's.
    pub event: String,
    /// The line that says it, cleaned for a label and cut to [`MAX_ERROR_MESSAGE_BYTES`].
    pub message: String,
    /// The rank that printed it or that torchrun named, when known.
    pub rank: Option<u32>,
    /// The run's step when it was read.
    pub step: Option<f64>,
    /// Unix time it was read.
    pub time: f64,
    specific: bool,
}

impl LastError {
    /// The message as the `message` label carries it: `rank N: ` first when the rank is known.
    pub fn label(&self) -> String {
        match self.rank {
            Some(r) => events::label_message(
                &format!("rank {r}: {}", self.message),
                MAX_ERROR_MESSAGE_BYTES,
            ),
            None => self.message.clone(),
        }
    }
}

impl RunState {
    /// Reads one line for error events (`raw` for its `[rankN]:` prefix, `text` cleaned).
    pub fn error_line(&mut self, raw: &[u8], text: &str, now: f64) {
        let rank = events::rank_prefix(raw);
        if let Some(found) = self.tracker.line(text, rank) {
            self.error_found(found, now);
        }
    }

    /// Counts an event and decides whether it is the cause of the run's crash. The root cause
    /// wins: while the step has not advanced past the last error (one crash), a later error
    /// replaces it only when it is specific (out of memory, NCCL, CUDA) and the last was not,
    /// so rank 0's `Connection closed by peer` after rank 1's OOM is the cascade, not the
    /// cause. torchrun's root-cause block names the rank that failed first: that rank's first
    /// error becomes the cause, or, when it printed none, the signal that killed it.
    pub fn error_found(&mut self, found: Found, now: f64) {
        match found {
            Found::Event {
                kind,
                message,
                rank,
            } => {
                self.events[kind as usize] += 1;
                self.note_error(kind.as_str(), kind.specific(), &message, rank, now);
            }
            Found::RootCause {
                rank,
                exitcode,
                message,
            } => {
                let signal = exitcode.is_some_and(|c| c < 0) || message.starts_with("Signal ");
                if signal {
                    self.events[EventKind::ProcessKilled as usize] += 1;
                }
                self.start_crash_if_new();
                if let Some(first) = self
                    .crash_errors
                    .iter()
                    .find(|e| rank.is_some() && e.rank == rank)
                {
                    self.last_error = Some(first.clone());
                } else if signal {
                    let message = match exitcode {
                        Some(c) if message.is_empty() => format!("exitcode {c}"),
                        _ => message,
                    };
                    self.last_error = Some(self.error(
                        EventKind::ProcessKilled.as_str(),
                        false,
                        &message,
                        rank,
                        now,
                    ));
                } else if let Some(e) = self.last_error.as_mut().filter(|e| e.rank.is_none()) {
                    e.rank = rank;
                }
            }
        }
    }

    /// A user rule's event (`event:` on the rule) on a line `text` read at `now`.
    pub fn rule_event(&mut self, name: &str, raw: &[u8], text: &str, now: f64) {
        let full = self.rule_events.len() >= MAX_RULE_EVENTS;
        match self.rule_events.get_mut(name) {
            Some(n) => *n += 1,
            None if full => {
                self.keys_dropped += 1;
                return;
            }
            None => {
                self.rule_events.insert(name.to_string(), 1);
            }
        }
        self.note_error(name, true, text, events::rank_prefix(raw), now);
    }

    fn error(
        &self,
        event: &str,
        specific: bool,
        message: &str,
        rank: Option<u32>,
        now: f64,
    ) -> LastError {
        LastError {
            event: event.to_string(),
            message: events::label_message(message, MAX_ERROR_MESSAGE_BYTES),
            rank,
            step: self.step,
            time: now,
            specific,
        }
    }

    /// Forgets the last crash's errors once the step advanced past it (a restart).
    fn start_crash_if_new(&mut self) -> bool {
        let past = self
            .last_error
            .as_ref()
            .is_some_and(|e| match (self.step, e.step) {
                (Some(now), Some(then)) => now > then,
                (Some(_), None) => true,
                _ => false,
            });
        if past {
            self.crash_errors.clear();
        }
        past
    }

    fn note_error(
        &mut self,
        event: &str,
        specific: bool,
        message: &str,
        rank: Option<u32>,
        now: f64,
    ) {
        let new_crash = self.start_crash_if_new();
        let e = self.error(event, specific, message, rank, now);
        match self.crash_errors.iter().position(|c| c.rank == rank) {
            Some(i) if specific && !self.crash_errors[i].specific => {
                self.crash_errors[i] = e.clone()
            }
            Some(_) => {}
            None if self.crash_errors.len() < MAX_CRASH_RANKS => self.crash_errors.push(e.clone()),
            None => {}
        }
        let replace = match &self.last_error {
            None => true,
            Some(_) if new_crash => true,
            Some(old) => specific && !old.specific,
        };
        if replace {
            self.last_error = Some(e);
        }
    }
}
