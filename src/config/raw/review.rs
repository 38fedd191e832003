//! Validation of review from chat: `[review]` / `[slack.review]`, the Slack
//! signing secret and the `[http]` callback listener.

use std::path::PathBuf;

use super::{Check, RawConfig, RawReview, non_empty};
use crate::config::{CallbackConfig, MattermostReview, ReviewMapping, SlackReview, Token};

/// The upstream default of `slack_user_id_trait`.
const DEFAULT_SLACK_TRAIT: &str = "slack_user_id";

/// An optional secret value; one starting with `/` names a file (read now
/// with `read_files`, so a problem is reported with the others).
pub(super) fn optional_secret(key: &str, v: &Option<String>, read_files: bool, chk: &mut Check) -> Option<Token> {
    let v = non_empty(v)?;
    let t = if v.starts_with('/') { Token::File(PathBuf::from(v)) } else { Token::Inline(crate::config::Secret::new(v)) };
    if read_files && let Err(e) = t.resolve() {
        chk.problem(format!("{key}: {e}"));
        return None;
    }
    Some(t)
}

impl RawConfig {
    /// Review from Slack, or `None` when it is off.
    pub(super) fn slack_review(&self, read_files: bool, chk: &mut Check) -> Option<SlackReview> {
        let slack = self.slack.as_ref()?;
        let (section, key) = match (&self.review, &slack.review) {
            (Some(_), Some(_)) => {
                chk.problem("[review] and [slack.review] are the same table: keep one of them");
                return None;
            }
            (Some(r), None) => (Some(r), "review"),
            (None, Some(r)) => (Some(r), "slack.review"),
            (None, None) => (None, "review"),
        };
        let secret_key = match (non_empty(&slack.signing_secret), non_empty(&slack.secret)) {
            (Some(_), Some(_)) => {
                chk.problem("slack.secret is the older name of slack.signing_secret: set only slack.signing_secret");
                "slack.signing_secret"
            }
            (None, Some(_)) => "slack.secret",
            _ => "slack.signing_secret",
        };
        let secret_value = if secret_key == "slack.secret" { &slack.secret } else { &slack.signing_secret };
        let signing_secret = optional_secret(secret_key, secret_value, read_files, chk);
        let default = RawReview::default();
        let r = section.unwrap_or(&default);
        // Without a review table, a signing secret alone turns buttons on, as
        // it did in the older plugins; `enabled = false` turns them off.
        let enabled = r.enabled.unwrap_or(section.is_none() && signing_secret.is_some());
        let app_token_key = format!("{key}.app_token");
        let app_token = optional_secret(&app_token_key, &r.app_token, read_files, chk);
        if !enabled {
            if section.is_some() && (app_token.is_some() || signing_secret.is_some()) {
                chk.warn(format!("{key}.enabled is not true: cards carry no Approve/Deny buttons and clicks are not accepted"));
            }
            return None;
        }
        if app_token.is_none() && signing_secret.is_none() {
            chk.problem(format!(
                "{key}.enabled is true but no click transport is set: set {key}.app_token (an xapp- app-level token, Socket Mode) or slack.signing_secret (HTTP interactivity through http.listen_addr)"
            ));
        }
        if let Some(t) = &app_token {
            check_app_token(&app_token_key, t, read_files, chk);
        }
        if app_token.is_some() && signing_secret.is_some() {
            chk.warn(format!(
                "both {key}.app_token and {secret_key} are set: a Slack app delivers clicks through Socket Mode or through its Request URL, not both; Socket Mode wins while it is switched on in the app settings"
            ));
        }
        if signing_secret.is_some() && non_empty(&self.http.listen_addr).is_none() {
            chk.problem(format!(
                "{secret_key} enables HTTP interactivity, which needs http.listen_addr (the callback listener, e.g. \"0.0.0.0:8443\"); or remove it and use {key}.app_token (Socket Mode)"
            ));
        }
        let trait_key = if key == "review" { "slack_user_id_trait" } else { "user_id_trait" };
        let (given, other) = if key == "review" { (&r.slack_user_id_trait, &r.user_id_trait) } else { (&r.user_id_trait, &r.slack_user_id_trait) };
        if other.is_some() {
            chk.problem(format!("{key}: the trait key here is {key}.{trait_key}; rename the other one"));
        }
        let mapping = mapping(key, trait_key, given, DEFAULT_SLACK_TRAIT, r.allow_email_username_match, chk);
        Some(SlackReview { mapping, app_token, signing_secret })
    }

    /// Review from Mattermost, or `None` when it is off.
    pub(super) fn mattermost_review(&self, read_files: bool, chk: &mut Check) -> Option<MattermostReview> {
        let m = self.mattermost.as_ref()?;
        let secret = optional_secret("mattermost.secret", &m.secret, read_files, chk);
        let Some(r) = m.review.as_ref().filter(|r| r.enabled.unwrap_or(false)) else {
            if m.review.is_some() && secret.is_some() {
                chk.warn("mattermost.review.enabled is not true: cards carry no Approve/Deny buttons");
            }
            return None;
        };
        if r.app_token.is_some() {
            chk.problem("mattermost.review.app_token: Mattermost has no app token; clicks come to http.listen_addr (remove the key)");
        }
        if r.slack_user_id_trait.is_some() {
            chk.problem("mattermost.review.slack_user_id_trait: the key here is mattermost.review.user_id_trait");
        }
        if secret.is_none() {
            chk.problem("mattermost.review.enabled needs mattermost.secret: a random string (or a file path) that signs the buttons, e.g. from `openssl rand -hex 32`");
        }
        let public = non_empty(&self.http.public_addr);
        if non_empty(&self.http.listen_addr).is_none() || public.is_none() {
            chk.problem("mattermost.review.enabled needs http.listen_addr (the callback listener) and http.public_addr (the URL Mattermost calls it at, e.g. http://teleport-plugin.teleport.svc:8443)");
        }
        let action_url = format!("{}/mattermost/actions", public.unwrap_or_default().trim_end_matches('/'));
        let mapping = mapping("mattermost.review", "user_id_trait", &r.user_id_trait, "mattermost_user_id", r.allow_email_username_match, chk);
        Some(MattermostReview { mapping, secret: secret?, action_url })
    }

    /// The callback listener, when configured.
    pub(super) fn callbacks(&self, read_files: bool, chk: &mut Check) -> Option<CallbackConfig> {
        let h = &self.http;
        let Some(listen_addr) = non_empty(&h.listen_addr) else {
            for (k, v) in [("public_addr", &h.public_addr), ("https_key_file", &h.https_key_file), ("https_cert_file", &h.https_cert_file)] {
                if non_empty(v).is_some() {
                    chk.warn(format!("http.{k} is ignored without http.listen_addr (the callback listener)"));
                }
            }
            return None;
        };
        if listen_addr.parse::<std::net::SocketAddr>().is_err() {
            chk.problem(format!("http.listen_addr: {listen_addr:?} must be ip:port such as \"0.0.0.0:8443\""));
        }
        if non_empty(&h.listen) == Some(listen_addr) {
            chk.problem("http.listen_addr must differ from http.listen (health and metrics stay on http.listen)");
        }
        let public_addr = non_empty(&h.public_addr).map(|a| {
            match reqwest::Url::parse(a) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => chk.problem(format!("http.public_addr: {a:?} is not an http(s) URL (e.g. https://teleport-plugin.example.com)")),
            }
            a.trim_end_matches('/').to_string()
        });
        let tls = match (non_empty(&h.https_key_file), non_empty(&h.https_cert_file)) {
            (Some(k), Some(c)) => {
                for (key, path) in [("http.https_key_file", k), ("http.https_cert_file", c)] {
                    if read_files && let Err(e) = std::fs::metadata(path) {
                        chk.problem(format!("{key}: cannot read {path}: {e}"));
                    }
                }
                Some((PathBuf::from(k), PathBuf::from(c)))
            }
            (None, None) => None,
            _ => {
                chk.problem("http: set both https_key_file and https_cert_file for TLS on the callback listener, or neither");
                None
            }
        };
        Some(CallbackConfig { listen_addr: listen_addr.to_string(), public_addr, tls })
    }
}

/// How clickers are mapped to Teleport users.
fn mapping(
    key: &str,
    trait_key: &str,
    given: &Option<String>,
    default: &str,
    allow_email: Option<bool>,
    chk: &mut Check,
) -> ReviewMapping {
    let allow_email_username_match = allow_email.unwrap_or(false);
    let user_id_trait = match given {
        Some(t) => t.trim().to_string(),
        None => default.to_string(),
    };
    if user_id_trait.is_empty() && !allow_email_username_match {
        chk.problem(format!(
            "{key}.{trait_key} is empty and {key}.allow_email_username_match is off, so no clicker could be mapped to a Teleport user: name the Teleport trait that holds the chat user ID (default \"{default}\")"
        ));
    }
    ReviewMapping { user_id_trait, allow_email_username_match, known_users: Default::default() }
}

/// An app-level token starts with `xapp-`; a bot token there is a common mix-up.
fn check_app_token(key: &str, t: &Token, read_files: bool, chk: &mut Check) {
    let value = match t {
        Token::Inline(s) => s.clone(),
        Token::File(_) if read_files => match t.resolve() {
            Ok(s) => s,
            Err(_) => return,
        },
        Token::File(_) => return,
    };
    let v = value.expose();
    if v.starts_with("xoxb-") || v.starts_with("xoxp-") {
        chk.problem(format!(
            "{key}: this is a {} token; Socket Mode needs an app-level token (xapp-...) with the connections:write scope (Slack app settings → Basic Information → App-Level Tokens)",
            if v.starts_with("xoxb-") { "bot" } else { "user" }
        ));
    } else if !v.starts_with("xapp-") {
        chk.problem(format!("{key}: an app-level token starts with xapp- (Slack app settings → Basic Information → App-Level Tokens)"));
    }
}
