//! Which Teleport user clicked: the chat user ID found in exactly one
//! Teleport user's trait, else the one Teleport user a config table names
//! for it (`ReviewMapping::known_users`), else (only when allowed) the chat
//! account's verified email as a Teleport user name. Answers are cached briefly, as
//! upstream does, and dropped when a review by the mapped user fails.

use std::sync::Arc;
use std::time::Duration;

use crate::chat::Chat;
use crate::chat::cache::TtlCache;
use crate::config::ReviewMapping;
use crate::teleport::TeleportClient;
use crate::teleport::client::describe_status;

/// Upstream keeps a mapping 10 minutes.
pub const MAPPING_TTL: Duration = Duration::from_secs(600);

/// Why a clicker maps to no single user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmapped {
    None(String),
    Several(String),
    /// Teleport or the chat API could not be asked.
    Unreachable(String),
}

pub struct Mapper {
    client: Arc<TeleportClient>,
    cache: TtlCache<String>,
}

fn key(chat: &str, user_id: &str) -> String {
    format!("{chat}\u{0}{user_id}")
}

impl Mapper {
    pub fn new(client: Arc<TeleportClient>, ttl: Duration) -> Self {
        Self { client, cache: TtlCache::new(ttl) }
    }

    /// The Teleport user behind `user_id` of `chat`.
    pub async fn teleport_user(&self, chat: &dyn Chat, cfg: &ReviewMapping, user_id: &str) -> Result<String, Unmapped> {
        let k = key(chat.name(), user_id);
        if let Some(name) = self.cache.get(&k) {
            return Ok(name);
        }
        let name = self.resolve(chat, cfg, user_id).await?;
        self.cache.put(&k, name.clone());
        Ok(name)
    }

    /// Forgets a mapping (after Auth refused a review by it).
    pub fn forget(&self, chat: &str, user_id: &str) {
        self.cache.remove(&key(chat, user_id));
    }

    async fn resolve(&self, chat: &dyn Chat, cfg: &ReviewMapping, user_id: &str) -> Result<String, Unmapped> {
        let unreachable = |s: tonic::Status| Unmapped::Unreachable(describe_status(&s));
        if !cfg.user_id_trait.is_empty() {
            let users = self.client.users_with_trait(&cfg.user_id_trait, user_id).await.map_err(unreachable)?;
            match users.as_slice() {
                [one] => return Ok(one.name.clone()),
                [] => {}
                several => {
                    let names: Vec<&str> = several.iter().map(|u| u.name.as_str()).collect();
                    return Err(Unmapped::Several(format!(
                        "the Teleport users {} all have the trait \"{}\" = {user_id}; ask a Teleport admin to keep it on one user",
                        names.join(", "),
                        cfg.user_id_trait
                    )));
                }
            }
        }
        // A config table naming the chat ID (Discord's `[discord.users]`
        // read backwards) is the next most trustworthy source.
        match cfg.known_users.get(user_id).map(Vec::as_slice) {
            Some([one]) => return Ok(one.clone()),
            Some(several) if several.len() > 1 => {
                return Err(Unmapped::Several(format!(
                    "the configuration lists the Teleport users {} for your chat account; ask the plugin's operator to keep one",
                    several.join(", ")
                )));
            }
            _ => {}
        }
        let trait_hint = if cfg.user_id_trait.is_empty() {
            String::new()
        } else {
            format!("ask a Teleport admin to add the trait \"{}\" = {user_id} to your Teleport user", cfg.user_id_trait)
        };
        if !cfg.allow_email_username_match {
            return Err(Unmapped::None(format!("no Teleport user has it; {trait_hint}")));
        }
        let email = chat.verified_email(user_id).await.map_err(|e| Unmapped::Unreachable(e.to_string()))?;
        let Some(email) = email else {
            return Err(Unmapped::None(format!(
                "no Teleport user has it and your chat account has no verified email{}",
                if trait_hint.is_empty() { String::new() } else { format!("; {trait_hint}") }
            )));
        };
        match self.client.get_user(&email).await.map_err(unreachable)? {
            Some(u) => Ok(u.name),
            None => Err(Unmapped::None(format!(
                "no Teleport user is named {email}{}",
                if trait_hint.is_empty() { String::new() } else { format!("; {trait_hint}") }
            ))),
        }
    }
}
