//! The configuration file as written, and its validation into [`Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{
    ChatConfig, Config, ConnectionMode, DEFAULT_DISCORD_API, DEFAULT_SLACK_API, Format, HttpConfig, IdentitySource,
    LogConfig, LogOutput, PluginConfig, RoleRecipients, RoutingConfig, TeleportConfig, Token, parse_duration,
};
use crate::identity::source::IdentityFiles;

mod discord_review;
mod review;

/// A value given as one string or a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

type RawRouting = BTreeMap<String, StringOrList>;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub teleport: RawTeleport,
    pub slack: Option<RawSlack>,
    pub discord: Option<RawDiscord>,
    pub mattermost: Option<RawMattermost>,
    pub console: Option<RawConsole>,
    pub role_to_recipients: Option<RawRouting>,
    pub log: RawLog,
    pub http: RawHttp,
    pub plugin: RawPlugin,
    pub routing: RawRoutingSection,
    /// Review from Slack, as the official `teleport-slack` spells it.
    pub review: Option<RawReview>,
}

/// `[review]` (and its alias `[slack.review]`): Approve/Deny from chat.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawReview {
    pub enabled: Option<bool>,
    pub app_token: Option<String>,
    /// `[review]` spelling of the trait key.
    pub slack_user_id_trait: Option<String>,
    /// `[<chat>.review]` spelling of the trait key.
    pub user_id_trait: Option<String>,
    pub allow_email_username_match: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTeleport {
    pub addr: Option<String>,
    pub auth_server: Option<String>,
    pub identity: Option<String>,
    pub refresh_identity: Option<bool>,
    pub refresh_identity_interval: Option<String>,
    pub client_key: Option<String>,
    pub client_crt: Option<String>,
    pub root_cas: Option<String>,
    pub identity_secret: Option<RawSecretRef>,
    pub connection: Option<String>,
    pub web_ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSecretRef {
    pub name: Option<String>,
    pub key: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSlack {
    pub token: Option<String>,
    pub api_url: Option<String>,
    /// Removed upstream in v11; `role_to_recipients."*"` replaced it.
    pub recipients: Option<IgnoredAny>,
    pub role_to_recipients: Option<RawRouting>,
    pub signing_secret: Option<String>,
    /// The older plugins' name for `signing_secret`.
    pub secret: Option<String>,
    pub review: Option<RawReview>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawDiscord {
    pub token: Option<String>,
    pub api_url: Option<String>,
    pub role_to_recipients: Option<RawRouting>,
    /// Teleport user → Discord user ID, to DM requesters on resolution
    /// (and, read backwards, to map clickers).
    pub users: Option<BTreeMap<String, String>>,
    /// The application's Ed25519 public key (hex): clicks over HTTP.
    pub public_key: Option<String>,
    pub review: Option<discord_review::RawDiscordReview>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawMattermost {
    pub url: Option<String>,
    pub token: Option<String>,
    /// Older guides' default recipient: `team` with `channel`.
    pub team: Option<String>,
    pub channel: Option<String>,
    /// HMAC key signing the buttons' contexts.
    pub secret: Option<String>,
    pub review: Option<RawReview>,
    pub recipients: Option<Vec<String>>,
    pub role_to_recipients: Option<RawRouting>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConsole {
    pub role_to_recipients: Option<RawRouting>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLog {
    pub output: Option<String>,
    pub severity: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// The callback listener (chat interactivity), as the older plugins name it.
    pub listen_addr: Option<String>,
    pub public_addr: Option<String>,
    pub https_key_file: Option<String>,
    pub https_cert_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawPlugin {
    pub instance_id: Option<String>,
    pub concurrency: Option<usize>,
    pub claim_lease: Option<String>,
    pub shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRoutingSection {
    pub crd: Option<bool>,
    pub namespace: Option<String>,
}

/// Parses the text and lists the keys the schema does not know.
pub fn parse(text: &str, format: Format) -> Result<(RawConfig, Vec<String>), String> {
    let mut unknown = Vec::new();
    let raw = match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|mut e| {
                e.set_input(Some(text));
                format!("not valid TOML: {e}")
            })?;
            serde_ignored::deserialize(de, |p| unknown.push(p.to_string())).map_err(|mut e: toml::de::Error| {
                e.set_input(Some(text));
                format!("unexpected value: {e}")
            })?
        }
        Format::Yaml => {
            if text.trim().is_empty() {
                RawConfig::default()
            } else {
                let de = serde_yaml::Deserializer::from_str(text);
                serde_ignored::deserialize(de, |p| unknown.push(p.to_string()))
                    .map_err(|e| format!("not valid YAML for this configuration: {e}"))?
            }
        }
    };
    // serde_ignored marks Option layers with `?`; keys we accept but ignore
    // on purpose get their own, more useful warning.
    let unknown = unknown
        .into_iter()
        .map(|p| p.split('.').filter(|seg| *seg != "?").collect::<Vec<_>>().join("."))
        .filter(|p| !DELIBERATELY_IGNORED.iter().any(|k| p == k || p.starts_with(&format!("{k}."))))
        .collect();
    Ok((raw, unknown))
}

const DELIBERATELY_IGNORED: &[&str] = &["slack.recipients"];

/// Collects problems while validating.
#[derive(Default)]
struct Check {
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Check {
    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }
    fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A token value; one starting with `/` names a file. With `read_files`,
/// the file is read now so a problem is reported with the others.
fn token(key: &str, v: &Option<String>, read_files: bool, chk: &mut Check) -> Option<Token> {
    if non_empty(v).is_none() {
        chk.problem(format!("{key} is required: set the bot token, or a path to a file holding it (a value starting with /)"));
        return None;
    }
    review::optional_secret(key, v, read_files, chk)
}

fn url(key: &str, v: Option<&str>, default: &str, chk: &mut Check) -> String {
    let v = v.unwrap_or(default).trim();
    match reqwest::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            let mut s = u.to_string();
            if !s.ends_with('/') {
                s.push('/');
            }
            s
        }
        _ => {
            chk.problem(format!("{key}: {v:?} is not an http(s) URL (e.g. {default})"));
            String::new()
        }
    }
}

fn routing(key: &str, raw: &RawRouting, chk: &mut Check) -> RoleRecipients {
    let mut out = RoleRecipients::new();
    for (role, recipients) in raw {
        let list: Vec<String> = recipients.clone().into_vec().into_iter().map(|r| r.trim().to_string()).collect();
        if role.trim().is_empty() {
            chk.problem(format!("{key}: a role name is empty; use a role name or \"*\" for the default"));
        }
        if list.iter().any(String::is_empty) {
            chk.problem(format!("{key}[{role:?}]: a recipient is empty; remove it or name a channel, user or email"));
        }
        out.insert(role.clone(), list.into_iter().filter(|r| !r.is_empty()).collect());
    }
    out
}

fn require_default(key: &str, map: &RoleRecipients, crd_routing: bool, chk: &mut Check) {
    if map.get("*").is_some_and(|v| !v.is_empty()) {
        return;
    }
    if crd_routing {
        chk.warn(format!(
            "{key}[\"*\"] is not set: requests that match no role and no AccessRequestRoute are not posted"
        ));
    } else {
        chk.problem(format!(
            "{key}[\"*\"] is required: add a default recipient for roles without their own entry, e.g. \"*\" = \"#access-requests\""
        ));
    }
}

fn addr(v: &str, chk: &mut Check) -> String {
    let v = v.trim();
    let valid = v
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok());
    if !valid {
        chk.problem(format!(
            "teleport.addr: {v:?} must be host:port, e.g. \"teleport.example.com:443\" (Proxy) or \"auth.example.com:3025\" (Auth)"
        ));
    }
    v.to_string()
}

fn default_instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "teleport-plugin".into())
}

impl RawConfig {
    pub fn validate(self, unknown: Vec<String>, read_files: bool) -> Result<Config, Vec<String>> {
        let mut chk = Check::default();
        for key in unknown {
            chk.warn(format!("unknown key `{key}` is ignored; check its spelling"));
        }
        let teleport = self.teleport_config(read_files, &mut chk);
        let crd_routing = self.routing.crd.unwrap_or(false);
        let chats = self.chat_configs(crd_routing, read_files, &mut chk);
        let log = self.log_config(&mut chk);
        let callbacks = self.callbacks(read_files, &mut chk);
        let listen = match self.http.listen.as_deref().map(str::trim) {
            Some("") => None,
            Some(a) => {
                if a.parse::<std::net::SocketAddr>().is_err() && !a.contains(':') {
                    chk.problem(format!("http.listen: {a:?} must be host:port such as \"0.0.0.0:8081\", or \"\" to disable"));
                }
                Some(a.to_string())
            }
            None => Some("0.0.0.0:8081".into()),
        };
        let http = HttpConfig { listen, callbacks };
        let plugin = self.plugin_config(&mut chk);
        let routing = RoutingConfig {
            crd: crd_routing,
            namespace: non_empty(&self.routing.namespace).map(String::from),
        };
        if chk.problems.is_empty() {
            Ok(Config { teleport, chats, log, http, plugin, routing, warnings: chk.warnings })
        } else {
            Err(chk.problems)
        }
    }

    fn teleport_config(&self, read_files: bool, chk: &mut Check) -> TeleportConfig {
        let t = &self.teleport;
        let addr_value = match (non_empty(&t.addr), non_empty(&t.auth_server)) {
            (Some(a), Some(_)) => {
                chk.warn("teleport.auth_server is deprecated and ignored because teleport.addr is set");
                a.to_string()
            }
            (Some(a), None) => a.to_string(),
            (None, Some(a)) => {
                chk.warn("teleport.auth_server is deprecated; rename it to teleport.addr");
                a.to_string()
            }
            (None, None) => "localhost:3025".to_string(),
        };
        let addr = addr(&addr_value, chk);
        let triple = [("client_crt", &t.client_crt), ("client_key", &t.client_key), ("root_cas", &t.root_cas)];
        let set: Vec<&str> = triple.iter().filter(|(_, v)| non_empty(v).is_some()).map(|(k, _)| *k).collect();
        let interval = match non_empty(&t.refresh_identity_interval) {
            Some(s) => parse_duration(s).unwrap_or_else(|e| {
                chk.problem(format!("teleport.refresh_identity_interval: {e}"));
                Duration::from_secs(60)
            }),
            None => Duration::from_secs(60),
        };
        let refresh = t.refresh_identity.unwrap_or(false);
        let secret = t.identity_secret.as_ref();
        let sources = [non_empty(&t.identity).is_some(), !set.is_empty(), secret.is_some()].iter().filter(|b| **b).count();
        if sources > 1 {
            chk.problem("teleport: set only one of teleport.identity, the TLS triple (client_crt, client_key, root_cas) and teleport.identity_secret");
        }
        if refresh && non_empty(&t.identity).is_none() {
            chk.problem("teleport.refresh_identity requires teleport.identity (the identity file to re-read)");
        }
        let identity = if let Some(path) = non_empty(&t.identity) {
            IdentitySource::Files { files: IdentityFiles::IdentityFile(PathBuf::from(path)), refresh, interval }
        } else if !set.is_empty() {
            let missing: Vec<&str> = triple.iter().filter(|(_, v)| non_empty(v).is_none()).map(|(k, _)| *k).collect();
            if !missing.is_empty() {
                chk.problem(format!(
                    "teleport: the TLS triple needs all of client_crt, client_key and root_cas; missing {}",
                    missing.join(", ")
                ));
            }
            let p = |v: &Option<String>| PathBuf::from(non_empty(v).unwrap_or_default());
            IdentitySource::Files {
                files: IdentityFiles::Tls { cert: p(&t.client_crt), key: p(&t.client_key), cas: p(&t.root_cas) },
                refresh: true,
                interval,
            }
        } else if let Some(s) = secret {
            let name = non_empty(&s.name).unwrap_or_default().to_string();
            if name.is_empty() {
                chk.problem("teleport.identity_secret.name is required: the Secret tbot writes the identity to");
            }
            IdentitySource::Secret {
                name,
                key: non_empty(&s.key).unwrap_or("identity").to_string(),
                namespace: non_empty(&s.namespace).map(String::from),
            }
        } else {
            chk.problem("teleport: no identity configured: set teleport.identity (an identity file), the TLS triple (client_crt, client_key, root_cas) or teleport.identity_secret (a Kubernetes Secret written by tbot)");
            IdentitySource::Files { files: IdentityFiles::IdentityFile(PathBuf::new()), refresh, interval }
        };
        let connection = match non_empty(&t.connection).map(str::to_ascii_lowercase).as_deref() {
            None | Some("auto") => ConnectionMode::Auto,
            Some("direct") => ConnectionMode::Direct,
            Some("proxy") => ConnectionMode::Proxy,
            Some(other) => {
                chk.problem(format!("teleport.connection: {other:?} is not one of \"auto\", \"direct\", \"proxy\""));
                ConnectionMode::Auto
            }
        };
        let web_ca = non_empty(&t.web_ca).map(PathBuf::from);
        if let Some(path) = &web_ca
            && read_files
            && let Err(e) = crate::identity::cas::load_cas(path)
        {
            chk.problem(format!("teleport.web_ca: {e}"));
        }
        TeleportConfig { addr, identity, connection, web_ca }
    }

    fn chat_configs(&self, crd_routing: bool, read_files: bool, chk: &mut Check) -> Vec<ChatConfig> {
        let configured = [self.slack.is_some(), self.discord.is_some(), self.mattermost.is_some(), self.console.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if configured == 0 {
            chk.problem("no chat configured: add a [slack], [discord] or [mattermost] section (or [console] to print messages instead)");
            return Vec::new();
        }
        let top = self.role_to_recipients.as_ref().map(|r| routing("role_to_recipients", r, chk));
        if configured > 1 && top.is_some() {
            chk.problem("role_to_recipients: several chats are configured, so the top-level map is ambiguous; move it under each chat, e.g. [slack.role_to_recipients] and [discord.role_to_recipients]");
        }
        let pick = |own: &Option<RawRouting>, key: &str, chk: &mut Check| -> (RoleRecipients, String) {
            match own {
                Some(r) => (routing(key, r, chk), key.to_string()),
                None => (top.clone().unwrap_or_default(), "role_to_recipients".to_string()),
            }
        };
        let mut chats = Vec::new();
        if let Some(s) = &self.slack {
            if s.recipients.is_some() {
                chk.warn("slack.recipients was removed in Teleport 11 and is ignored; use role_to_recipients.\"*\"");
            }
            let token = token("slack.token", &s.token, read_files, chk);
            let api_url = url("slack.api_url", non_empty(&s.api_url), DEFAULT_SLACK_API, chk);
            let (routing, key) = pick(&s.role_to_recipients, "slack.role_to_recipients", chk);
            require_default(&key, &routing, crd_routing, chk);
            let review = self.slack_review(read_files, chk);
            if let Some(token) = token {
                chats.push(ChatConfig::Slack { token, api_url, routing, review });
            }
        }
        if let Some(d) = &self.discord {
            let token = token("discord.token", &d.token, read_files, chk);
            let api_url = url("discord.api_url", non_empty(&d.api_url), DEFAULT_DISCORD_API, chk);
            let (routing, key) = pick(&d.role_to_recipients, "discord.role_to_recipients", chk);
            require_default(&key, &routing, crd_routing, chk);
            let user_ids = d.users.clone().unwrap_or_default();
            for (user, id) in &user_ids {
                if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
                    chk.problem(format!("discord.users[{user:?}]: {id:?} is not a Discord user ID (digits only; copy it with Developer Mode)"));
                }
            }
            let review = self.discord_review(d, &user_ids, chk);
            if let Some(token) = token {
                chats.push(ChatConfig::Discord { token, api_url, routing, user_ids, review });
            }
        }
        if let Some(m) = &self.mattermost {
            let token = token("mattermost.token", &m.token, read_files, chk);
            let url = match non_empty(&m.url) {
                Some(u) => url("mattermost.url", Some(u), "https://mattermost.example.com", chk),
                None => {
                    chk.problem("mattermost.url is required: the address of your Mattermost server, e.g. https://mattermost.example.com");
                    String::new()
                }
            };
            // As upstream: a non-empty recipients list replaces the role map.
            let mut routing = match m.recipients.as_ref().filter(|r| !r.is_empty()) {
                Some(list) => BTreeMap::from([("*".to_string(), list.clone())]),
                None => pick(&m.role_to_recipients, "mattermost.role_to_recipients", chk).0,
            };
            match (non_empty(&m.team), non_empty(&m.channel)) {
                (Some(team), Some(channel)) => {
                    // The older guides' default recipient, used where no
                    // routing names a default of its own.
                    if routing.get("*").is_none_or(|v| v.is_empty()) {
                        routing.insert("*".into(), vec![format!("{team}/{channel}")]);
                    }
                }
                (None, None) => {}
                _ => chk.problem("mattermost: team and channel name the default recipient together (team/channel as in the channel URL); set both or neither"),
            }
            let review = self.mattermost_review(read_files, chk);
            if let Some(token) = token {
                chats.push(ChatConfig::Mattermost { url, token, routing, review });
            }
        }
        if let Some(c) = &self.console {
            let (routing, _) = pick(&c.role_to_recipients, "console.role_to_recipients", chk);
            chats.push(ChatConfig::Console { routing });
        }
        chats
    }

    fn log_config(&self, chk: &mut Check) -> LogConfig {
        let output = match self.log.output.as_deref().map(str::trim).unwrap_or("stderr") {
            "stderr" | "error" | "2" => LogOutput::Stderr,
            "stdout" | "out" | "1" | "" => LogOutput::Stdout,
            path => LogOutput::File(PathBuf::from(path)),
        };
        let severity = self.log.severity.as_deref().unwrap_or("info").trim().to_ascii_lowercase();
        let severity = match severity.as_str() {
            "info" | "" => "info",
            "err" | "error" => "error",
            "debug" => "debug",
            "warn" | "warning" => "warn",
            "trace" => "trace",
            other => {
                chk.problem(format!("log.severity: {other:?} is not one of info, error, warn, debug, trace"));
                "info"
            }
        }
        .to_string();
        let json = match self.log.format.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
            None | Some("text") | Some("") => false,
            Some("json") => true,
            Some(other) => {
                chk.problem(format!("log.format: {other:?} is not \"text\" or \"json\""));
                false
            }
        };
        LogConfig { output, severity, json }
    }

    fn plugin_config(&self, chk: &mut Check) -> PluginConfig {
        let duration = |key: &str, v: &Option<String>, default: u64, min: Duration, chk: &mut Check| match non_empty(v) {
            Some(s) => match parse_duration(s) {
                Ok(d) if d >= min => d,
                Ok(_) => {
                    chk.problem(format!("{key}: must be at least {}", humantime::format_duration(min)));
                    min
                }
                Err(e) => {
                    chk.problem(format!("{key}: {e}"));
                    Duration::from_secs(default)
                }
            },
            None => Duration::from_secs(default),
        };
        let concurrency = self.plugin.concurrency.unwrap_or(32);
        if !(1..=1024).contains(&concurrency) {
            chk.problem(format!("plugin.concurrency: {concurrency} is out of range; use 1 to 1024"));
        }
        PluginConfig {
            instance_id: non_empty(&self.plugin.instance_id).map(String::from).unwrap_or_else(default_instance_id),
            concurrency: concurrency.clamp(1, 1024),
            claim_lease: duration("plugin.claim_lease", &self.plugin.claim_lease, 30, Duration::from_secs(1), chk),
            shutdown_grace: duration("plugin.shutdown_grace", &self.plugin.shutdown_grace, 10, Duration::ZERO, chk),
        }
    }
}
