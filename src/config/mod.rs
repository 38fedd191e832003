//! Configuration: TOML compatible with the official `teleport-slack.toml`,
//! `teleport-discord.toml` and `teleport-mattermost.toml`, or the same
//! structure in YAML. Loading validates everything up front; each problem
//! names its key and the fix, and all problems are reported together.

mod raw;
mod secret;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::RawConfig;
pub use secret::{Secret, Token};

use crate::identity::source::IdentityFiles;

/// Default config paths tried by `start`, as the official plugins use.
pub const DEFAULT_PATHS: &[&str] =
    &["/etc/teleport-slack.toml", "/etc/teleport-discord.toml", "/etc/teleport-mattermost.toml"];

pub const DEFAULT_SLACK_API: &str = "https://slack.com/api/";
pub const DEFAULT_DISCORD_API: &str = "https://discord.com/api/v10/";

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub teleport: TeleportConfig,
    pub chats: Vec<ChatConfig>,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub plugin: PluginConfig,
    pub routing: RoutingConfig,
    /// Non-fatal findings (deprecated or unknown keys) to log at start.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TeleportConfig {
    pub addr: String,
    pub identity: IdentitySource,
    /// How to reach Auth (direct, or through a Proxy).
    pub connection: ConnectionMode,
    /// PEM file of extra CAs trusted for the Proxy's web certificate (a
    /// private CA, or a TLS-inspecting corporate proxy), besides the system's.
    pub web_ca: Option<PathBuf>,
}

/// Where the identity comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentitySource {
    Files {
        files: IdentityFiles,
        /// Re-read when the files change (and at least every `interval`).
        refresh: bool,
        interval: Duration,
    },
    /// A Kubernetes Secret (as tbot writes it).
    Secret { name: String, key: String, namespace: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// Direct when the address looks like Auth, else detect a Proxy.
    Auto,
    /// Straight to Auth (`auth:3025`).
    Direct,
    /// Through a Proxy with TLS routing (`teleport.example.com:443`),
    /// tunnelled through the WebSocket connection upgrade when an L7 load
    /// balancer is in front.
    Proxy,
}

/// Recipients per requested role; `"*"` is the fallback.
pub type RoleRecipients = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, PartialEq)]
pub enum ChatConfig {
    Slack { token: Token, api_url: String, routing: RoleRecipients, review: Option<SlackReview> },
    Discord {
        token: Token,
        api_url: String,
        routing: RoleRecipients,
        user_ids: BTreeMap<String, String>,
        review: Option<DiscordReview>,
    },
    Mattermost { url: String, token: Token, routing: RoleRecipients, review: Option<MattermostReview> },
    /// Prints messages to stdout instead of posting them (demo, dry runs).
    Console { routing: RoleRecipients },
}

impl ChatConfig {
    /// Plugin name: the key of this chat's plugin data, as the official plugins.
    pub fn plugin_name(&self) -> &'static str {
        match self {
            Self::Slack { .. } => "slack",
            Self::Discord { .. } => "discord",
            Self::Mattermost { .. } => "mattermost",
            Self::Console { .. } => "console",
        }
    }

    /// How clickers are mapped, when review from this chat is on.
    pub fn review_mapping(&self) -> Option<&ReviewMapping> {
        match self {
            Self::Slack { review: Some(r), .. } => Some(&r.mapping),
            Self::Mattermost { review: Some(r), .. } => Some(&r.mapping),
            Self::Discord { review: Some(r), .. } => Some(&r.mapping),
            _ => None,
        }
    }

    /// Whether cards carry Approve/Deny buttons.
    pub fn review_enabled(&self) -> bool {
        self.review_mapping().is_some()
    }

    pub fn routing(&self) -> &RoleRecipients {
        match self {
            Self::Slack { routing, .. }
            | Self::Discord { routing, .. }
            | Self::Mattermost { routing, .. }
            | Self::Console { routing } => routing,
        }
    }
}

/// How a clicker's chat account is mapped to one Teleport user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewMapping {
    /// Teleport trait holding the chat user ID; empty: trait matching off.
    pub user_id_trait: String,
    /// Also map by the chat account's verified email == Teleport user name.
    pub allow_email_username_match: bool,
    /// Chat user ID → the Teleport users a config table names for it
    /// (Discord: `[discord.users]` read backwards), consulted when no
    /// Teleport user has the trait; one name maps, several are ambiguous.
    pub known_users: BTreeMap<String, Vec<String>>,
}

/// Review from Discord: on when present. Clicks come over the Gateway, or
/// over HTTP at `/discord/interactions` when `public_key` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordReview {
    pub mapping: ReviewMapping,
    /// The application's Ed25519 public key, 64 lowercase hex characters.
    pub public_key: Option<String>,
}

/// Review from Slack: on when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackReview {
    pub mapping: ReviewMapping,
    /// App-level token (`xapp-`): clicks over Socket Mode.
    pub app_token: Option<Token>,
    /// Signing secret: clicks over HTTP at `/slack/interactions`.
    pub signing_secret: Option<Token>,
}

/// Review from Mattermost: on when present. Clicks come to the callback
/// listener, the buttons' contexts signed with `secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MattermostReview {
    pub mapping: ReviewMapping,
    pub secret: Token,
    /// The buttons' integration URL: `http.public_addr` + `/mattermost/actions`.
    pub action_url: String,
}

/// The listener chats call back (interactivity), apart from health and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackConfig {
    pub listen_addr: String,
    /// The URL chats reach it at (shown by `check`, put in button callbacks).
    pub public_addr: Option<String>,
    /// Key and certificate files, for TLS on the listener.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub output: LogOutput,
    pub severity: String,
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Address of /healthz, /readyz and /metrics; `None` disables them.
    pub listen: Option<String>,
    /// The callback listener (`listen_addr`), when configured.
    pub callbacks: Option<CallbackConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Name of this replica in plugin-data claims; unique per replica.
    pub instance_id: String,
    /// Requests handled at once.
    pub concurrency: usize,
    /// How long another replica waits before taking over an unfinished claim.
    pub claim_lease: Duration,
    /// Bound on finishing in-flight work at SIGTERM.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Watch `AccessRequestRoute` resources.
    pub crd: bool,
    pub namespace: Option<String>,
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
#[error("{} has {} problem{}:\n{}", .source_name, .problems.len(), if .problems.len() == 1 { "" } else { "s" },
    .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(source_name: &str, problem: String) -> Self {
        Self { source_name: source_name.to_string(), problems: vec![problem] }
    }
}

/// Which syntax a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::Yaml,
            _ => Self::Toml,
        }
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(&name, format!("cannot read the file: {e}")))?;
        Self::parse(&text, Format::from_path(path), &name)
    }

    /// Reads and validates a configuration without reading the files it
    /// names (token files): for checking a rendered config away from its pod.
    pub fn load_offline(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(&name, format!("cannot read the file: {e}")))?;
        Self::parse_with(&text, Format::from_path(path), &name, false)
    }

    /// Parses and validates configuration text, reading token files.
    pub fn parse(text: &str, format: Format, source_name: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, format, source_name, true)
    }

    pub fn parse_with(text: &str, format: Format, source_name: &str, read_files: bool) -> Result<Self, ConfigError> {
        let (raw, unknown) = raw::parse(text, format).map_err(|e| ConfigError::one(source_name, e))?;
        raw.validate(unknown, read_files)
            .map_err(|problems| ConfigError { source_name: source_name.to_string(), problems })
    }
}

/// The default config path: for one chat (the binary run as
/// `teleport-slack`, ...) that chat's file, otherwise the first of
/// [`DEFAULT_PATHS`] that exists; an error names what was looked for.
pub fn default_path(chat: Option<&str>) -> Result<PathBuf, String> {
    if let Some(chat) = chat {
        let path = PathBuf::from(format!("/etc/teleport-{chat}.toml"));
        if path.exists() {
            return Ok(path);
        }
        return Err(format!("no --config given and the default file {} does not exist; pass --config PATH", path.display()));
    }
    DEFAULT_PATHS.iter().map(PathBuf::from).find(|p| p.exists()).ok_or_else(|| {
        format!("no --config given and none of the default files exist ({}); pass --config PATH", DEFAULT_PATHS.join(", "))
    })
}

/// How clicks reach a chat's review, in a sentence for `check`.
pub fn review_summary(chat: &ChatConfig, http: &HttpConfig) -> String {
    if let ChatConfig::Mattermost { review: Some(r), .. } = chat {
        return format!(
            "on through the buttons' integration URL {} (signed contexts); clickers mapped by {}",
            r.action_url,
            mapping_summary(&r.mapping)
        );
    }
    if let ChatConfig::Discord { review: Some(r), .. } = chat {
        return discord_review_summary(r, http);
    }
    let ChatConfig::Slack { review: Some(r), .. } = chat else {
        return "off (cards link to the Web UI or show tsh commands)".into();
    };
    let mut ways = Vec::new();
    if r.app_token.is_some() {
        ways.push("Socket Mode (outbound WebSocket; switch Socket Mode on in the Slack app)".to_string());
    }
    if r.signing_secret.is_some()
        && let Some(cb) = &http.callbacks
    {
        let url = match &cb.public_addr {
            Some(a) => format!("{a}/slack/interactions"),
            None => format!("http{}://<public address of {}>/slack/interactions", if cb.tls.is_some() { "s" } else { "" }, cb.listen_addr),
        };
        ways.push(format!("HTTP interactivity (Slack app Request URL: {url})"));
    }
    format!("on through {}; clickers mapped by {}", ways.join(" and "), mapping_summary(&r.mapping))
}

fn mapping_summary(m: &ReviewMapping) -> String {
    let trait_part = if m.user_id_trait.is_empty() { "no trait".to_string() } else { format!("trait \"{}\"", m.user_id_trait) };
    format!("{trait_part}{}", if m.allow_email_username_match { ", then by verified email" } else { "" })
}

fn discord_review_summary(r: &DiscordReview, http: &HttpConfig) -> String {
    let way = match (&r.public_key, &http.callbacks) {
        (Some(_), Some(cb)) => {
            let url = match &cb.public_addr {
                Some(a) => format!("{a}/discord/interactions"),
                None => format!("http{}://<public address of {}>/discord/interactions", if cb.tls.is_some() { "s" } else { "" }, cb.listen_addr),
            };
            format!("the HTTP interactions endpoint (Developer Portal → General Information → Interactions Endpoint URL: {url})")
        }
        _ => "the Gateway (outbound WebSocket; leave the Interactions Endpoint URL empty in the Developer Portal)".to_string(),
    };
    let table = if r.mapping.known_users.is_empty() { "" } else { ", then by [discord.users]" };
    format!("on through {way}; clickers mapped by {}{table}", mapping_summary(&r.mapping))
}

/// Parses a Go-style duration ("90s", "1m", "1h30m").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (use a duration such as \"30s\", \"1m\" or \"1h30m\")"))
}

/// Commented example configuration for `configure`.
pub fn example(chat: &str) -> Option<&'static str> {
    match chat {
        "slack" => Some(include_str!("examples/slack.toml")),
        "discord" => Some(include_str!("examples/discord.toml")),
        "mattermost" => Some(include_str!("examples/mattermost.toml")),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
