//! Simulators of the systems the plugin talks to, speaking their real wire
//! protocols: Teleport Auth (gRPC over mutual TLS) and its Proxy, Slack,
//! Discord, Mattermost and the Kubernetes API. Used by the tests, the
//! benchmarks and the product's `demo` command.
//!
//! This crate never depends on the product: each simulator reads the wire on
//! its own (the generated protobuf types come from `teleport-plugin-proto`),
//! so a parsing bug in the product cannot hide behind the same bug here.

pub mod access;
pub mod chat;
pub mod kube;
pub mod official_plugin;
pub mod pki;
pub mod proxy;
pub mod teleport;
pub mod version_policy;
