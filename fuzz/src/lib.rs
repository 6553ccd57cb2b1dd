//! Fuzz target bodies, shared by the `cargo fuzz` targets (`fuzz_targets/`) and by the
//! stable-toolchain mutation run in the test suite (`tests/it/fuzz.rs` includes this file).
//! Each takes arbitrary bytes, must never panic, and checks what must hold of the result.

#[path = "targets.rs"]
mod targets;
pub use targets::*;
