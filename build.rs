//! Compiles our minimal Teleport `.proto` subset with protox (pure Rust), so a
//! fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/teleport/wrappers.proto",
        "proto/teleport/types.proto",
        "proto/teleport/header.proto",
        "proto/teleport/access_monitoring_rules.proto",
        "proto/teleport/authservice.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
