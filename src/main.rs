//! `teleport-plugin`: Teleport Access Requests in Slack, Discord and Mattermost.

use std::process::ExitCode;

// The engine allocates many small, short-lived buffers per notification
// (protobuf, JSON, HTTP headers); mimalloc serves them with far less CPU
// than glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // One crypto provider for every TLS user in the process (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let persona = teleport_plugin::cli::Persona::from_argv0(std::env::args_os().next().as_deref());
    let cli = teleport_plugin::cli::Cli::parse_as(persona);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(teleport_plugin::cli::run(cli, persona))
}
