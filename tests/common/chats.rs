//! The three chat simulators behind one interface, for end-to-end tests.
#![allow(dead_code)]

use std::collections::HashMap;

use serde_json::Value;
use teleport_plugin_sim::chat::{
    ChatSim, DiscordSim, DiscordSimConfig, MattermostSim, MattermostSimConfig, SimChannel, SimCore, SimUser, SlackSim,
    SlackSimConfig,
};

#[derive(Clone)]
pub enum Sim {
    Slack(SlackSim),
    Discord(DiscordSim),
    Mattermost(MattermostSim),
}

/// One top-level message or reply, as the simulator holds it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub request: String,
    pub kind: String,
    pub text: String,
    pub reactions: Vec<String>,
    pub reply_to: Option<String>,
    pub id: String,
}

pub const CHANNEL_SLACK: &str = "C0ACCESS01";
pub const CHANNEL_DISCORD: &str = "100000000000000001";

impl Sim {
    pub async fn start(which: &str) -> Sim {
        let alice = SimUser::new("U0ALICE001", "alice", "alice@example.com");
        match which {
            "slack" => Sim::Slack(
                SlackSim::start(
                    SlackSimConfig::default().with_user(alice).with_channel(SimChannel::new(CHANNEL_SLACK, "access")),
                )
                .await,
            ),
            "discord" => Sim::Discord(
                DiscordSim::start(
                    DiscordSimConfig::default()
                        .with_user(SimUser::new("200000000000000001", "alice", "alice@example.com"))
                        .with_channel(SimChannel::new(CHANNEL_DISCORD, "access")),
                )
                .await,
            ),
            _ => Sim::Mattermost(
                MattermostSim::start(
                    MattermostSimConfig::default()
                        .with_user(SimUser::new("aliceid0000000000000000001", "alice", "alice@example.com"))
                        .with_channel(SimChannel::new("accesschannel00000000000001", "access").in_team("ops")),
                )
                .await,
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sim::Slack(_) => "slack",
            Sim::Discord(_) => "discord",
            Sim::Mattermost(_) => "mattermost",
        }
    }

    pub fn section(&self) -> String {
        match self {
            Sim::Slack(s) => format!(
                "[slack]\ntoken = \"xoxb-sim-token\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"{CHANNEL_SLACK}\"\n",
                s.base_url()
            ),
            Sim::Discord(s) => format!(
                "[discord]\ntoken = \"discord-sim-token\"\napi_url = \"{}\"\n[discord.users]\n\"alice@example.com\" = \"200000000000000001\"\n[role_to_recipients]\n\"*\" = \"{CHANNEL_DISCORD}\"\n",
                s.base_url()
            ),
            Sim::Mattermost(s) => format!(
                "[mattermost]\nurl = \"{}\"\ntoken = \"mm-sim-token\"\n[role_to_recipients]\n\"*\" = \"ops/access\"\n",
                s.base_url()
            ),
        }
    }

    /// Lifts Discord's default posting and global limits (5 posts per 5 s
    /// per channel, 50 calls per second), for bursts of hundreds of cards in
    /// one channel that are about something else; the limits have their own
    /// tests. The ban on invalid requests stays. No-op for the others.
    pub fn without_rate_limits(&self) {
        if let Sim::Discord(s) = self {
            s.set_route_limit(teleport_plugin_sim::chat::discord::POST_MESSAGE_ROUTE, Some(teleport_plugin_sim::chat::RateWindow::new(10_000, std::time::Duration::from_secs(1))));
            s.set_global_limit(None);
        }
    }

    pub fn core(&self) -> &SimCore {
        match self {
            Sim::Slack(s) => ChatSim::core(s),
            Sim::Discord(s) => ChatSim::core(s),
            Sim::Mattermost(s) => ChatSim::core(s),
        }
    }

    /// Every message with the request it belongs to.
    pub fn messages(&self) -> Vec<Msg> {
        match self {
            Sim::Slack(s) => s
                .messages()
                .into_iter()
                .filter_map(|m| {
                    let md = m.metadata.clone()?;
                    Some(Msg {
                        request: md["event_payload"]["request_id"].as_str()?.to_string(),
                        kind: md["event_payload"]["kind"].as_str()?.to_string(),
                        text: format!("{} {}", m.text.clone().unwrap_or_default(), m.blocks.clone().unwrap_or(Value::Null)),
                        reactions: m.reactions.keys().cloned().collect(),
                        reply_to: m.thread_ts.clone(),
                        id: m.ts.clone(),
                    })
                })
                .collect(),
            Sim::Discord(s) => s
                .messages()
                .into_iter()
                .filter_map(|m| {
                    let marker = m.content.lines().last()?.strip_prefix("-# Teleport access request ")?.to_string();
                    let (request, kind) = marker.split_once(" · ")?;
                    Some(Msg {
                        request: request.to_string(),
                        kind: kind.to_string(),
                        text: format!("{} {}", m.content, serde_json::to_string(&m.embeds).unwrap()),
                        reactions: vec![],
                        reply_to: None,
                        id: m.id.clone(),
                    })
                })
                .collect(),
            Sim::Mattermost(s) => s
                .posts()
                .into_iter()
                .filter_map(|p| {
                    Some(Msg {
                        request: p.props["teleport_request_id"].as_str()?.to_string(),
                        kind: p.props["teleport_kind"].as_str()?.to_string(),
                        text: p.message.clone(),
                        reactions: vec![],
                        reply_to: (!p.root_id.is_empty()).then(|| p.root_id.clone()),
                        id: p.id.clone(),
                    })
                })
                .collect(),
        }
    }

    pub fn cards(&self, request: &str) -> Vec<Msg> {
        self.messages().into_iter().filter(|m| m.request == request && m.kind == "card").collect()
    }

    /// Cards per request.
    pub fn card_counts(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for m in self.messages().into_iter().filter(|m| m.kind == "card") {
            *out.entry(m.request).or_default() += 1;
        }
        out
    }
}

