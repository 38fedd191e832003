//! The binary as the image ships it: built without the `demo` feature, so
//! without the simulator crate. Test builds unify the simulator's crate
//! features into the product's (both link `ssh-key`, for one), which can hide
//! a capability the shipped binary lacks; this suite builds the real thing in
//! its own target directory and runs it against the simulator.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use common::Env;
use teleport_plugin_sim::pki::KeyAlgorithm;

/// Builds the shipped binary once per run (incremental after the first).
fn shipped_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target = root.join("target").join("shipped");
        let status = Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["build", "--locked", "--no-default-features", "-p", "teleport-plugin", "--bin", "teleport-plugin"])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the shipped binary failed");
        target.join("debug").join("teleport-plugin")
    })
    .clone()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(shipped_binary()).args(args).output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn has_no_demo_command() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("start") && !out.contains("demo"), "{out}");
    let (code, _, err) = run(&["demo"]);
    assert_ne!(code, 0);
    assert!(err.contains("unrecognized subcommand 'demo'"), "{err}");
}

/// `check` loads the identity (TLS and SSH certificates) and authenticates to
/// Auth with each key type Teleport issues.
#[tokio::test]
async fn checks_identities_of_every_key_type() {
    let env = Env::new().await;
    let now = SystemTime::now();
    for alg in KeyAlgorithm::ALL {
        let issued = env
            .sim
            .pki()
            .issue_identity_with("access-plugin", now - Duration::from_secs(60), now + Duration::from_secs(3600), alg)
            .unwrap();
        std::fs::write(&env.identity_path, issued.identity_file).unwrap();
        let config = env.dir.path().join("check.toml");
        std::fs::write(&config, env.config_text("[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n")).unwrap();
        let config = config.display().to_string();
        let (code, out, err) = tokio::task::spawn_blocking(move || run(&["check", "--config", &config])).await.unwrap();
        assert_eq!(code, 0, "{alg:?}:\n{out}\n{err}");
        assert!(out.contains("✔ identity: user access-plugin"), "{alg:?}: {out}");
    }
}
