//! Everything that speaks to Teleport: connection, typed calls, the event
//! stream, plugin data, users and reviews on behalf of a mapped user.

pub mod client;
pub mod connect;
pub mod convert;
pub mod plugin_data;
pub mod resources;
pub mod review;
pub mod route;
pub mod tls;
pub mod users;
pub mod watch;

pub use client::{ClusterInfo, Connection, TeleportClient};
pub use connect::{ChannelOptions, Dialer, DirectDialer};
pub use plugin_data::{PluginDataStore, RequestData};
pub use review::{ReviewError, classify};
pub use users::User;
pub use watch::{Feed, StreamState, Watcher};
