use std::io::Write;

use super::*;

fn toml(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Format::Toml, "test.toml")
}

fn problems(text: &str) -> String {
    toml(text).expect_err("must be rejected").to_string()
}

const MINIMAL_SLACK: &str = r##"
[teleport]
addr = "auth.example.com:3025"
identity = "/var/lib/teleport/plugins/slack/auth_id"
[slack]
token = "xoxb-secret-value"
[role_to_recipients]
"*" = "#access"
"dev" = ["#dev", "lead@example.com"]
"##;

#[test]
fn every_example_is_valid() {
    for chat in ["slack", "discord", "mattermost"] {
        let cfg = toml(example(chat).unwrap()).unwrap_or_else(|e| panic!("{chat}: {e}"));
        assert_eq!(cfg.chats[0].plugin_name(), chat);
        assert!(cfg.warnings.is_empty(), "{chat}: {:?}", cfg.warnings);
    }
}

#[test]
fn official_slack_file_loads_with_string_and_list_recipients() {
    let cfg = toml(MINIMAL_SLACK).unwrap();
    assert_eq!(cfg.teleport.addr, "auth.example.com:3025");
    let ChatConfig::Slack { token, api_url, routing } = &cfg.chats[0] else { panic!() };
    assert_eq!(token.resolve().unwrap().expose(), "xoxb-secret-value");
    assert_eq!(api_url, DEFAULT_SLACK_API);
    assert_eq!(routing["*"], vec!["#access"]);
    assert_eq!(routing["dev"], vec!["#dev", "lead@example.com"]);
    assert_eq!(cfg.log.severity, "info");
    assert_eq!(cfg.log.output, LogOutput::Stderr);
    assert_eq!(cfg.http.listen.as_deref(), Some("0.0.0.0:8081"));
}

#[test]
fn yaml_form_is_equivalent() {
    let yaml = r##"
teleport:
  addr: auth.example.com:3025
  identity: /var/lib/teleport/plugins/slack/auth_id
slack:
  token: xoxb-secret-value
role_to_recipients:
  "*": "#access"
  dev: ["#dev", "lead@example.com"]
"##;
    let a = toml(MINIMAL_SLACK).unwrap();
    let b = Config::parse(yaml, Format::Yaml, "test.yaml").unwrap();
    assert_eq!(a.teleport, b.teleport);
    assert_eq!(a.chats, b.chats);
}

#[test]
fn token_from_file_is_read_and_trimmed() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "  xoxb-from-file  ").unwrap();
    let text = MINIMAL_SLACK.replace("xoxb-secret-value", &f.path().display().to_string());
    let cfg = toml(&text).unwrap();
    let ChatConfig::Slack { token, .. } = &cfg.chats[0] else { panic!() };
    assert_eq!(token.resolve().unwrap().expose(), "xoxb-from-file");
}

#[test]
fn missing_token_file_is_named_without_leaking() {
    let text = MINIMAL_SLACK.replace("xoxb-secret-value", "/nonexistent/slack-token");
    let msg = problems(&text);
    assert!(msg.contains("slack.token: cannot read the token file /nonexistent/slack-token"), "{msg}");
}

#[test]
fn tokens_never_print() {
    let cfg = toml(MINIMAL_SLACK).unwrap();
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("xoxb-secret-value"), "{dbg}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let msg = problems(
        r##"
[teleport]
addr = "https://teleport.example.com"
client_crt = "/c"
refresh_identity_interval = "soon"
[slack]
[role_to_recipients]
"dev" = "#dev"
[log]
severity = "loud"
"##,
    );
    for needle in [
        "teleport.addr: \"https://teleport.example.com\" must be host:port",
        "missing client_key, root_cas",
        "teleport.refresh_identity_interval",
        "slack.token is required",
        "role_to_recipients[\"*\"] is required",
        "log.severity: \"loud\"",
        "problems:",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn identity_sources_are_exclusive_and_required() {
    let none = MINIMAL_SLACK.replace("identity = \"/var/lib/teleport/plugins/slack/auth_id\"", "");
    assert!(problems(&none).contains("no identity configured"));
    let both = MINIMAL_SLACK.replace("[slack]", "client_crt = \"/a\"\nclient_key = \"/b\"\nroot_cas = \"/c\"\n[slack]");
    assert!(problems(&both).contains("set only one of"));
    let refresh = MINIMAL_SLACK.replace("identity = \"/var/lib/teleport/plugins/slack/auth_id\"", "refresh_identity = true\nidentity_secret = { name = \"s\" }");
    assert!(problems(&refresh).contains("refresh_identity requires teleport.identity"));
}

#[test]
fn identity_secret_defaults_its_key() {
    let text = MINIMAL_SLACK.replace(
        "identity = \"/var/lib/teleport/plugins/slack/auth_id\"",
        "identity_secret = { name = \"plugin-identity\" }",
    );
    let cfg = toml(&text).unwrap();
    assert_eq!(
        cfg.teleport.identity,
        IdentitySource::Secret { name: "plugin-identity".into(), key: "identity".into(), namespace: None }
    );
}

#[test]
fn deprecated_and_unknown_keys_warn() {
    let text = MINIMAL_SLACK.replace("addr = ", "auth_server = ").replace("[slack]", "[slack]\nrecipients = [\"#x\"]\ntokn = \"typo\"");
    let cfg = toml(&text).unwrap();
    let w = cfg.warnings.join("\n");
    assert!(w.contains("auth_server is deprecated"), "{w}");
    assert!(w.contains("slack.recipients was removed"), "{w}");
    assert!(w.contains("unknown key `slack.tokn`"), "{w}");
    assert_eq!(cfg.teleport.addr, "auth.example.com:3025");
}

#[test]
fn several_chats_need_their_own_routing() {
    let text = format!("{MINIMAL_SLACK}\n[discord]\ntoken = \"d\"\n");
    assert!(problems(&text).contains("top-level map is ambiguous"));
    let text = r##"
[teleport]
identity = "/id"
[slack]
token = "xoxb-1"
[slack.role_to_recipients]
"*" = "#slack-access"
[discord]
token = "d"
[discord.role_to_recipients]
"*" = "123"
"##;
    let cfg = toml(text).unwrap();
    assert_eq!(cfg.chats.len(), 2);
    assert_eq!(cfg.chats[0].routing()["*"], vec!["#slack-access"]);
    assert_eq!(cfg.chats[1].routing()["*"], vec!["123"]);
}

#[test]
fn mattermost_recipients_replace_the_role_map() {
    let cfg = toml(example("mattermost").unwrap()).unwrap();
    let ChatConfig::Mattermost { url, routing, .. } = &cfg.chats[0] else { panic!() };
    assert_eq!(url, "https://mattermost.example.com/");
    assert_eq!(routing.len(), 1);
    assert_eq!(routing["*"], vec!["my-team/access-requests", "security-lead@example.com"]);
    let no_url = example("mattermost").unwrap().replace("url = \"https://mattermost.example.com\"", "");
    assert!(problems(&no_url).contains("mattermost.url is required"));
}

#[test]
fn no_chat_is_an_error() {
    assert!(problems("[teleport]\nidentity = \"/id\"\n").contains("no chat configured"));
}

#[test]
fn log_outputs_map_like_upstream() {
    for (v, want) in [
        ("stderr", LogOutput::Stderr),
        ("2", LogOutput::Stderr),
        ("stdout", LogOutput::Stdout),
        ("", LogOutput::Stdout),
        ("/var/log/plugin.log", LogOutput::File("/var/log/plugin.log".into())),
    ] {
        let cfg = toml(&format!("{MINIMAL_SLACK}\n[log]\noutput = \"{v}\"\nseverity = \"WARNING\"\nformat = \"json\"\n")).unwrap();
        assert_eq!(cfg.log.output, want);
        assert_eq!(cfg.log.severity, "warn");
        assert!(cfg.log.json);
    }
}

#[test]
fn durations_parse_like_go() {
    assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("1 fortnight").is_err());
}

#[test]
fn bad_syntax_points_at_the_line() {
    let msg = problems("[teleport\naddr = 1");
    assert!(msg.contains("not valid TOML"), "{msg}");
    let msg = problems("[teleport]\naddr = 3025\n");
    assert!(msg.contains("addr"), "{msg}");
}

#[test]
fn offline_validation_does_not_read_token_files() {
    let text = MINIMAL_SLACK.replace("xoxb-secret-value", "/var/lib/teleport/plugins/slack/slack-token");
    let cfg = Config::parse_with(&text, Format::Toml, "t", false).unwrap();
    let ChatConfig::Slack { token, .. } = &cfg.chats[0] else { panic!() };
    assert_eq!(*token, Token::File("/var/lib/teleport/plugins/slack/slack-token".into()));
    assert!(Config::parse(&text, Format::Toml, "t").is_err());
}

#[test]
fn web_ca_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let with = |path: &std::path::Path| MINIMAL_SLACK.replace("[slack]", &format!("web_ca = \"{}\"\n[slack]", path.display()));

    let missing = dir.path().join("missing.pem");
    let msg = problems(&with(&missing));
    assert!(msg.contains("teleport.web_ca: cannot read"), "{msg}");
    // Offline checks read no files.
    let offline = Config::parse_with(&with(&missing), Format::Toml, "test.toml", false).unwrap();
    assert_eq!(offline.teleport.web_ca, Some(missing.clone()));

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    assert!(problems(&with(&garbage)).contains("holds no PEM certificate"));

    let good = dir.path().join("ca.pem");
    let ca = teleport_plugin_sim::pki::ClusterPki::new("web.example.com").unwrap();
    std::fs::write(&good, ca.host_ca_pem()).unwrap();
    let cfg = toml(&with(&good)).unwrap();
    assert_eq!(cfg.teleport.web_ca, Some(good));
    assert_eq!(toml(MINIMAL_SLACK).unwrap().teleport.web_ca, None);
}
