//! Simulators of the systems the plugin talks to, speaking their real wire
//! protocols. Used by the tests, the benchmarks and the `demo` command.

pub mod chat;
pub mod kube;
pub mod pki;
pub mod proxy;
pub mod teleport;
