//! Teleport Access Request notifier: streams Access Request events from a
//! Teleport cluster and keeps one chat message per recipient current in Slack,
//! Discord or Mattermost.

pub mod admin;
pub mod app;
pub mod callbacks;
pub mod chat;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod engine;
pub mod health;
pub mod identity;
pub mod k8s;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod review;
/// Generated protobuf types (`proto/`), shared with the simulators.
pub use teleport_plugin_proto as pb;
pub mod teleport;
pub mod timefmt;
