//! Teleport Access Request notifier: streams Access Request events from a
//! Teleport cluster and keeps one chat message per recipient current in Slack,
//! Discord or Mattermost.

pub mod pb;
pub mod sim;
