//! In-process doubles of the external services the controller talks to, for tests.

pub mod kube;
