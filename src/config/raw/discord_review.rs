//! Validation of review from Discord: `[discord.review]` and
//! `discord.public_key` (the HTTP interactions endpoint).
//!
//! Discord delivers a click one way only: to the Interactions Endpoint URL
//! when one is set in the Developer Portal, else as `INTERACTION_CREATE`
//! over the Gateway. So `public_key` set means "HTTP", absent "Gateway".

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Check, RawConfig, RawDiscord, non_empty};
use crate::config::{DiscordReview, ReviewMapping};

/// The trait holding a Discord user ID unless configured otherwise.
pub const DEFAULT_DISCORD_TRAIT: &str = "discord_user_id";

/// `[discord.review]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDiscordReview {
    pub enabled: Option<bool>,
    pub user_id_trait: Option<String>,
    pub allow_email_username_match: Option<bool>,
}

/// Whether `key` is an Ed25519 public key in hex (32 bytes).
fn is_public_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RawConfig {
    /// Review from Discord, or `None` when it is off. `user_ids` is the
    /// validated `[discord.users]` table (Teleport user → Discord user ID).
    pub(super) fn discord_review(
        &self,
        d: &RawDiscord,
        user_ids: &BTreeMap<String, String>,
        chk: &mut Check,
    ) -> Option<DiscordReview> {
        let public_key = non_empty(&d.public_key).map(str::to_string);
        if let Some(k) = &public_key
            && !is_public_key(k)
        {
            chk.problem(format!(
                "discord.public_key: expected the application's public key as 64 hex characters, got {} characters{}; copy it from the Developer Portal (your application → General Information → Public Key)",
                k.chars().count(),
                if k.bytes().all(|b| b.is_ascii_hexdigit()) { "" } else { " including non-hex ones" }
            ));
        }
        let Some(r) = &d.review else {
            if public_key.is_some() {
                chk.warn("discord.public_key is set but [discord.review] is missing: add [discord.review] with enabled = true to put Approve/Deny buttons on cards");
            }
            return None;
        };
        if r.enabled != Some(true) {
            chk.warn(
                "[discord.review] is present but discord.review.enabled is not true: cards carry no Approve/Deny buttons and clicks are not accepted",
            );
            return None;
        }
        if public_key.is_some() && non_empty(&self.http.listen_addr).is_none() {
            chk.problem(
                "discord.public_key enables the HTTP interactions endpoint (POST /discord/interactions), which needs http.listen_addr (the callback listener, e.g. \"0.0.0.0:8443\"); or remove discord.public_key and receive clicks over the Gateway",
            );
        }
        let allow_email_username_match = r.allow_email_username_match.unwrap_or(false);
        if allow_email_username_match {
            chk.warn(
                "discord.review.allow_email_username_match has no effect: Discord bots cannot read their users' emails; map clickers with discord.review.user_id_trait or [discord.users]",
            );
        }
        let user_id_trait = match &r.user_id_trait {
            Some(t) => t.trim().to_string(),
            None => DEFAULT_DISCORD_TRAIT.to_string(),
        };
        if user_id_trait.is_empty() && !allow_email_username_match && user_ids.is_empty() {
            chk.problem(format!(
                "discord.review.user_id_trait is empty, discord.review.allow_email_username_match is off and [discord.users] is empty, so no clicker could be mapped to a Teleport user: name the Teleport trait that holds the Discord user ID (default \"{DEFAULT_DISCORD_TRAIT}\") or list users in [discord.users]"
            ));
        }
        let mapping = ReviewMapping { user_id_trait, allow_email_username_match, known_users: reverse(user_ids) };
        Some(DiscordReview { mapping, public_key: public_key.filter(|k| is_public_key(k)).map(|k| k.to_ascii_lowercase()) })
    }
}

/// `[discord.users]` read backwards: Discord user ID → Teleport users.
fn reverse(user_ids: &BTreeMap<String, String>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (teleport_user, discord_id) in user_ids {
        out.entry(discord_id.clone()).or_default().push(teleport_user.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{ChatConfig, Config, DiscordReview, Format, review_summary};

    const BASE: &str = r#"
[teleport]
addr = "auth.example.com:3025"
identity = "/var/lib/teleport/plugins/discord/auth_id"

[discord]
token = "discord-token"
role_to_recipients = { "*" = ["1234567890123456789"] }
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::parse_with(&format!("{BASE}{extra}"), Format::Toml, "discord.toml", false).map_err(|e| e.to_string())
    }

    fn review(cfg: &Config) -> Option<&DiscordReview> {
        let ChatConfig::Discord { review, .. } = &cfg.chats[0] else { panic!("not discord") };
        review.as_ref()
    }

    #[test]
    fn gateway_review_with_defaults() {
        let cfg = load("[discord.review]\nenabled = true\n").unwrap();
        let r = review(&cfg).expect("review on");
        assert_eq!(r.mapping.user_id_trait, "discord_user_id");
        assert!(!r.mapping.allow_email_username_match);
        assert!(r.public_key.is_none());
        assert!(cfg.chats[0].review_enabled());
        assert!(review_summary(&cfg.chats[0], &cfg.http).contains("Gateway"), "{}", review_summary(&cfg.chats[0], &cfg.http));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert!(review(&load("").unwrap()).is_none());
    }

    #[test]
    fn users_table_is_read_backwards() {
        let cfg = load("[discord.users]\n\"alice\" = \"111\"\n\"al2\" = \"111\"\n\"bob\" = \"222\"\n[discord.review]\nenabled = true\n").unwrap();
        let known = &review(&cfg).unwrap().mapping.known_users;
        assert_eq!(known["111"], vec!["al2".to_string(), "alice".to_string()]);
        assert_eq!(known["222"], vec!["bob".to_string()]);
    }

    #[test]
    fn http_endpoint_needs_a_key_in_hex_and_the_listener() {
        let key = "AB".repeat(32);
        let text = format!("{BASE}public_key = \"{key}\"\n[http]\nlisten_addr = \"127.0.0.1:8443\"\n[discord.review]\nenabled = true\n");
        let cfg = Config::parse_with(&text, Format::Toml, "d.toml", false).unwrap();
        let r = review(&cfg).unwrap();
        assert_eq!(r.public_key.as_deref(), Some("ab".repeat(32).as_str()));
        assert!(review_summary(&cfg.chats[0], &cfg.http).contains("/discord/interactions"));

        let bad = load("public_key = \"xyz\"\n[discord.review]\nenabled = true\n").unwrap_err();
        assert!(bad.contains("discord.public_key: expected the application's public key as 64 hex characters"), "{bad}");
        assert!(bad.contains("needs http.listen_addr"), "{bad}");
    }

    #[test]
    fn mapping_problems_name_the_keys() {
        let e = load("[discord.review]\nenabled = true\nuser_id_trait = \"\"\n").unwrap_err();
        assert!(e.contains("discord.review.user_id_trait is empty") && e.contains("[discord.users]"), "{e}");
        let cfg = load("[discord.users]\n\"alice\" = \"111\"\n[discord.review]\nenabled = true\nuser_id_trait = \"\"\n").unwrap();
        assert!(review(&cfg).is_some(), "[discord.users] alone can map clickers");
        let cfg = load("[discord.review]\nenabled = true\nallow_email_username_match = true\n").unwrap();
        assert!(cfg.warnings.iter().any(|w| w.contains("cannot read their users' emails")), "{:?}", cfg.warnings);
        let off = load("[discord.review]\nuser_id_trait = \"x\"\n").unwrap();
        assert!(review(&off).is_none());
        assert!(off.warnings.iter().any(|w| w.contains("discord.review.enabled is not true")), "{:?}", off.warnings);
        let unknown = load("[discord.review]\nenabled = true\napp_token = \"xapp-1\"\n").unwrap();
        assert!(unknown.warnings.iter().any(|w| w.contains("app_token")), "unknown keys are reported: {:?}", unknown.warnings);
    }
}
