//! Compiles our minimal Teleport `.proto` subset with protox (pure Rust), so a
//! fresh machine needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "teleport/wrappers.proto",
        "teleport/types.proto",
        "teleport/resources.proto",
        "teleport/header.proto",
        "teleport/access_monitoring_rules.proto",
        "teleport/list_resources.proto",
        "teleport/authservice.proto",
        "teleport/users_service.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
