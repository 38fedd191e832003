//! The notification engine: turns request events into chat messages and keeps
//! them current, with its memory in Teleport plugin data.

pub mod plan;
pub mod predicate;
pub mod queue;
