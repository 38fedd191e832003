//! The notification engine: turns request events into chat messages and keeps
//! them current, with its memory in Teleport plugin data.
//!
//! - [`plan`]: pure decisions (snapshot + record → next step), table-tested.
//! - [`queue`]: per-request ordering, parallelism across requests, retries.
//! - [`route`]: who to tell (rules, role map, routes, suggested reviewers).
//! - [`schedule`]: whether a request falls in a rule's `spec.schedules`.
//! - [`worker`]: carries out steps against the chat and plugin data.
//! - [`pipeline`]: one chat's loop tying these to the Teleport feed.

pub mod pipeline;
pub mod plan;
pub mod predicate;
pub mod queue;
pub mod route;
pub mod schedule;
pub mod worker;
