//! Teleport Access Request notifier: streams Access Request events from a
//! Teleport cluster and keeps one chat message per recipient current in Slack,
//! Discord or Mattermost.

pub mod app;
pub mod chat;
pub mod config;
pub mod engine;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod pb;
pub mod sim;
pub mod teleport;
