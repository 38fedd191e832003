//! In-process simulators of external services, used by tests and benchmarks.

pub mod chat;
