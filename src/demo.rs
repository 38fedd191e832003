//! `teleport-plugin demo`: the whole plugin against the built-in Teleport
//! simulator, printing to the console what it would post in a chat. A
//! simulated Slack workspace gets the same cards with Approve/Deny buttons,
//! and a reviewer's click there (over Socket Mode) approves a request.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::app::{Extras, launch};
use crate::chat::Chat;
use crate::chat::console::ConsoleChat;
use teleport_plugin_sim::chat::{ChatSim, SimChannel, SimUser, SlackSim, SlackSimConfig};
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

const BOB: &str = "U0BOB00001";
const SLACK_CHANNEL: &str = "C0ACCESS01";

/// The `ts` of request `id`'s card in the simulated Slack.
async fn wait_for_card(slack: &SlackSim, id: &str) -> Result<String> {
    for _ in 0..500 {
        let card = slack.messages_in(SLACK_CHANNEL).into_iter().find(|m| {
            m.thread_ts.is_none() && m.metadata.as_ref().is_some_and(|md| md["event_payload"]["request_id"] == id)
        });
        if let Some(m) = card {
            return Ok(m.ts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the Slack card of {id} did not appear")
}

/// What bob was shown after his click.
async fn wait_for_answer(slack: &SlackSim) -> Result<String> {
    for _ in 0..500 {
        if let Some(t) = slack.ephemerals(BOB).last() {
            return Ok(t.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("bob was not answered")
}

pub async fn run(pace: Duration) -> Result<()> {
    let _ = crate::logging::init(&LogConfig { output: LogOutput::Stderr, severity: "warn".into(), json: false }, false);
    let sim = TeleportSim::start(SimConfig::default()).await.context("starting the Teleport simulator")?;
    sim.set_role("editor", &["root", "ubuntu"]);
    sim.set_role("dev", &["dev"]);
    sim.set_role("auditor", &[]);
    // Review from chat: the plugin may submit for reviewers, bob reviews
    // editor requests and is linked to his Slack account by a trait.
    sim.set_submit_for_users("plugin-review", &["*"]);
    sim.put_user("access-plugin", &["plugin-review"], &[]);
    sim.allow_review("reviewer", &["editor"]);
    sim.put_user("bob@example.com", &["reviewer"], &[("slack_user_id", &[BOB])]);
    let slack = SlackSim::start(
        SlackSimConfig::default()
            .with_user(SimUser::new(BOB, "bob", "bob@example.com"))
            .with_channel(SimChannel::new(SLACK_CHANNEL, "access-requests")),
    )
    .await;
    let dir = tempfile::tempdir()?;
    let identity = dir.path().join("identity");
    std::fs::write(&identity, sim.issue_identity("access-plugin", Duration::from_secs(3600))?.identity_file)?;
    let text = format!(
        r##"
[teleport]
addr = "{addr}"
identity = "{identity}"

[slack]
token = "xoxb-sim-token"
api_url = "{slack}"
[slack.role_to_recipients]
"*" = "{SLACK_CHANNEL}"

[review]
enabled = true
app_token = "xapp-sim-app-token"

[console]
[console.role_to_recipients]
"*" = "#access-requests"
"dev" = ["#dev-team", "#access-requests"]

[http]
listen = ""
"##,
        addr = sim.addr(),
        identity = identity.display(),
        slack = slack.base_url(),
    );
    let cfg = Config::parse(&text, Format::Toml, "demo")?;
    println!("Teleport simulator: cluster {} on {}", sim.cluster_name(), sim.addr());
    println!("Routing: \"*\" → #access-requests, dev → #dev-team + #access-requests; a simulated Slack gets every card too");
    let slack_chat = crate::chat::build(&cfg.chats[0]).map_err(anyhow::Error::msg)?;
    let running = launch(&cfg, vec![slack_chat, Arc::new(ConsoleChat::default()) as Arc<dyn Chat>], Extras::default()).await?;
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

    say("erin@example.com requests the editor role; bob clicks Approve on the Slack card");
    let erin = sim.request("erin@example.com", &["editor"], "Rotate the API keys");
    let ts = wait_for_card(&slack, erin.id()).await?;
    slack.click(BOB, SLACK_CHANNEL, &ts, "approve_button").await.context("clicking Approve in Slack")?;
    let answer = wait_for_answer(&slack).await?;
    println!("Slack shows bob, and only bob: {answer}");
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
    drop(slack);
    println!("\nDemo finished: every message above was rendered by the plugin and kept current as the requests changed.");
    Ok(())
}
