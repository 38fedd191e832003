//! Checks shared by the fuzz targets.

use teleport_plugin::config::{ChatConfig, Config, ConfigError, Format};

/// Tokens shorter than this are too likely to appear in an error by chance.
const MIN_TOKEN_LEN: usize = 12;

/// Loads `text` as a configuration and checks what comes out: an error
/// lists at least one problem, a loaded configuration is coherent, and
/// neither shows an inline chat token.
pub fn load_and_check(text: &str, format: Format) -> Result<Config, ConfigError> {
    let result = Config::parse_with(text, format, "fuzz-config", false);
    let tokens = inline_tokens(text, format);
    match &result {
        Ok(cfg) => {
            assert!(!cfg.chats.is_empty(), "a loaded configuration has no chat");
            assert!(
                (1..=1024).contains(&cfg.plugin.concurrency),
                "concurrency {}",
                cfg.plugin.concurrency
            );
            for chat in &cfg.chats {
                match chat {
                    ChatConfig::Slack { api_url: url, .. }
                    | ChatConfig::Discord { api_url: url, .. }
                    | ChatConfig::Mattermost { url, .. } => {
                        assert!(
                            url.starts_with("http") && url.ends_with('/'),
                            "unusable URL {url:?}"
                        );
                    }
                    ChatConfig::Console { .. } => {}
                }
            }
            let shown = format!("{cfg:?}");
            for t in &tokens {
                assert!(
                    !shown.contains(t.as_str()),
                    "the configuration's Debug shows a token"
                );
            }
        }
        Err(e) => {
            assert!(!e.problems.is_empty(), "an error without problems");
            assert!(
                e.problems.iter().all(|p| !p.trim().is_empty()),
                "an empty problem: {e:?}"
            );
            let msg = e.to_string();
            for t in &tokens {
                assert!(!msg.contains(t.as_str()), "the error shows a token: {msg}");
            }
        }
    }
    result
}

/// Inline token values (`<chat>.token`) that can only reach the output by
/// leaking: alphanumeric (so no escaping or URL normalisation can produce
/// them from another value), written once in `text` (in any case) and with
/// no escape sequence anywhere in it.
fn inline_tokens(text: &str, format: Format) -> Vec<String> {
    if text.contains('\\') {
        return Vec::new();
    }
    let lower = text.to_lowercase();
    let doc: Option<serde_json::Value> = match format {
        Format::Toml => toml::from_str(text).ok(),
        Format::Yaml => serde_yaml::from_str(text).ok(),
    };
    let Some(doc) = doc else { return Vec::new() };
    ["slack", "discord", "mattermost"]
        .iter()
        .filter_map(|chat| doc.get(chat)?.get("token")?.as_str())
        .map(str::trim)
        .filter(|t| t.len() >= MIN_TOKEN_LEN && t.chars().all(|c| c.is_ascii_alphanumeric()))
        .filter(|t| lower.matches(t.to_lowercase().as_str()).count() == 1)
        .map(String::from)
        .collect()
}
