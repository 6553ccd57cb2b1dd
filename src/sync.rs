//! Locking shared state: every thread (tailer, collectors, attribution, server) takes the
//! same mutexes, and a holder that panicked must not make the state unusable for the others.

use std::sync::{Mutex, MutexGuard};

/// Locks, ignoring poisoning: the state stays usable even if a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
