//! `teleport-plugin demo`: the whole plugin against the built-in Teleport
//! simulator, printing to the console what it would post in a chat.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::app::{Extras, launch};
use crate::chat::Chat;
use crate::chat::console::ConsoleChat;
use crate::config::{Config, Format, LogConfig, LogOutput};
use teleport_plugin_sim::access::{self, AccessRequestExt};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};

fn say(step: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m▶ {step}\x1b[0m");
    } else {
        println!("\n▶ {step}");
    }
}

pub async fn run(pace: Duration) -> Result<()> {
    let _ = crate::logging::init(&LogConfig { output: LogOutput::Stderr, severity: "warn".into(), json: false }, false);
    let sim = TeleportSim::start(SimConfig::default()).await.context("starting the Teleport simulator")?;
    sim.set_role("editor", &["root", "ubuntu"]);
    sim.set_role("dev", &["dev"]);
    sim.set_role("auditor", &[]);
    let dir = tempfile::tempdir()?;
    let identity = dir.path().join("identity");
    std::fs::write(&identity, sim.issue_identity("access-plugin", Duration::from_secs(3600))?.identity_file)?;
    let text = format!(
        r##"
[teleport]
addr = "{addr}"
identity = "{identity}"

[console]

[role_to_recipients]
"*" = "#access-requests"
"dev" = ["#dev-team", "#access-requests"]

[http]
listen = ""
"##,
        addr = sim.addr(),
        identity = identity.display()
    );
    let cfg = Config::parse(&text, Format::Toml, "demo")?;
    println!("Teleport simulator: cluster {} on {}", sim.cluster_name(), sim.addr());
    println!("Routing: \"*\" → #access-requests, dev → #dev-team + #access-requests");
    let running = launch(&cfg, vec![Arc::new(ConsoleChat::default()) as Arc<dyn Chat>], Extras::default()).await?;
    anyhow::ensure!(running.ready(Duration::from_secs(10)).await, "the plugin did not become ready");
    let settle = || tokio::time::sleep(pace);

    say("alice@example.com requests the editor role");
    let editor = sim.request("alice@example.com", &["editor"], "Deploy the payments hotfix (INC-4211)");
    settle().await;
    say("bob@example.com reviews it: approve");
    sim.review(editor.id(), "bob@example.com", true, "Matches the incident ticket");
    settle().await;
    say("The request is approved");
    sim.approve(editor.id(), "Approved by bob@example.com");
    settle().await;

    say("carol@example.com requests the dev role (two channels)");
    let dev = sim.request("carol@example.com", &["dev"], "Debug the staging queue");
    settle().await;
    say("The request is denied");
    sim.deny(dev.id(), "Use the staging break-glass role instead");
    settle().await;

    say("dave@example.com requests SSH access to one node; nobody reviews it and it expires");
    let mut node = access::new_request("dave@example.com", &["auditor"]);
    node.spec_mut().request_reason = "Collect logs".into();
    node.spec_mut().requested_resource_i_ds.push(access::resource_id(sim.cluster_name(), "node", "db-primary", ""));
    let node = sim.create_request(node);
    settle().await;
    sim.expire(node.id());
    settle().await;

    say("mallory@example.com tries to ping everyone through the reason");
    sim.request("mallory@example.com", &["editor"], "<!channel> @everyone ```hi``` [click](https://evil.example)");
    settle().await;

    running.stop(Duration::from_secs(5)).await;
    println!("\nDemo finished: every message above was rendered by the plugin and kept current as the requests changed.");
    Ok(())
}
