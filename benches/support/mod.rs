//! What the benchmarks share with the integration tests: the test harness itself
//! (`tests/it/harness/`: free ports, guarded children, RSS, the HTTP client, the exposition
//! reader, the fake NVML library and machines), reached through the one `#[path]` below so
//! that there is a single copy of each helper.

#[path = "../../tests/it/harness/mod.rs"]
mod harness;

pub use harness::*;
