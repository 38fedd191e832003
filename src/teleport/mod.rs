//! Everything that speaks to Teleport: connection, typed calls, the event
//! stream and plugin data.

pub mod client;
pub mod connect;
pub mod convert;
pub mod plugin_data;
pub mod resources;
pub mod route;
pub mod tls;
pub mod watch;

pub use client::{ClusterInfo, Connection, TeleportClient};
pub use connect::{ChannelOptions, Dialer, DirectDialer};
pub use plugin_data::{PluginDataStore, RequestData};
pub use watch::{Feed, StreamState, Watcher};
