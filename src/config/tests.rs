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
    let ChatConfig::Slack { token, api_url, routing, .. } = &cfg.chats[0] else { panic!() };
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

fn slack_with(extra: &str) -> String {
    format!("{MINIMAL_SLACK}\n{extra}")
}

fn slack_review(cfg: &Config) -> Option<&SlackReview> {
    let ChatConfig::Slack { review, .. } = &cfg.chats[0] else { panic!("not slack") };
    review.as_ref()
}

#[test]
fn review_with_socket_mode_as_upstream_spells_it() {
    let cfg = toml(&slack_with("[review]\nenabled = true\napp_token = \"xapp-1-abc\"\n")).unwrap();
    let r = slack_review(&cfg).expect("review on");
    assert_eq!(r.mapping, ReviewMapping { user_id_trait: "slack_user_id".into(), allow_email_username_match: false, known_users: Default::default() });
    assert_eq!(r.app_token.as_ref().unwrap().resolve().unwrap().expose(), "xapp-1-abc");
    assert!(r.signing_secret.is_none());
    assert!(cfg.chats[0].review_enabled());
    assert!(review_summary(&cfg.chats[0], &cfg.http).contains("Socket Mode"));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn slack_review_table_is_the_same_table() {
    let text = slack_with(
        "[slack.review]\nenabled = true\napp_token = \"xapp-1-abc\"\nuser_id_trait = \"chat_id\"\nallow_email_username_match = true\n",
    );
    // The top-level role map sits after [slack]: move it above the table.
    let cfg = toml(&text).unwrap();
    let r = slack_review(&cfg).unwrap();
    assert_eq!(r.mapping, ReviewMapping { user_id_trait: "chat_id".into(), allow_email_username_match: true, known_users: Default::default() });
    let both = slack_with("[review]\nenabled = true\napp_token = \"xapp-1\"\n[slack.review]\nenabled = true\n");
    assert!(problems(&both).contains("[review] and [slack.review] are the same table"));
}

#[test]
fn review_config_errors_name_the_key_and_the_fix() {
    let none = problems(&slack_with("[review]\nenabled = true\n"));
    assert!(none.contains("review.enabled is true but no click transport is set"), "{none}");
    assert!(none.contains("review.app_token") && none.contains("slack.signing_secret"), "{none}");
    let bot = problems(&slack_with("[review]\nenabled = true\napp_token = \"xoxb-123\"\n"));
    assert!(bot.contains("review.app_token: this is a bot token") && bot.contains("xapp-"), "{bot}");
    assert!(!bot.contains("xoxb-123"), "the token leaked: {bot}");
    let no_trait = problems(&slack_with("[review]\nenabled = true\napp_token = \"xapp-1\"\nslack_user_id_trait = \"\"\n"));
    assert!(no_trait.contains("review.slack_user_id_trait is empty"), "{no_trait}");
    let no_listener = problems(&slack_with("[review]\nenabled = true\n")
        .replace("[slack]\n", "[slack]\nsigning_secret = \"s3cret\"\n"));
    assert!(no_listener.contains("needs http.listen_addr"), "{no_listener}");
    assert!(!no_listener.contains("s3cret"));
}

#[test]
fn signing_secret_and_the_older_secret_key_enable_http_interactivity() {
    let text = MINIMAL_SLACK.replace("[slack]\n", "[slack]\nsecret = \"s3cret\"\n")
        + "[http]\nlisten_addr = \"0.0.0.0:8443\"\npublic_addr = \"https://plugin.example.com/\"\n";
    let cfg = toml(&text).unwrap();
    let r = slack_review(&cfg).expect("a signing secret alone turns review on, as in the older plugins");
    assert_eq!(r.signing_secret.as_ref().unwrap().resolve().unwrap().expose(), "s3cret");
    let cb = cfg.http.callbacks.as_ref().unwrap();
    assert_eq!(cb.listen_addr, "0.0.0.0:8443");
    assert_eq!(cb.public_addr.as_deref(), Some("https://plugin.example.com"));
    assert!(review_summary(&cfg.chats[0], &cfg.http).contains("https://plugin.example.com/slack/interactions"));
    let off = toml(&(text.clone() + "[review]\nenabled = false\n")).unwrap();
    assert!(slack_review(&off).is_none());
    let both = MINIMAL_SLACK.replace("[slack]\n", "[slack]\nsecret = \"a\"\nsigning_secret = \"b\"\n");
    assert!(problems(&both).contains("slack.secret is the older name of slack.signing_secret"));
}

#[test]
fn both_transports_warn() {
    let text = MINIMAL_SLACK.replace("[slack]\n", "[slack]\nsigning_secret = \"s\"\n")
        + "[review]\nenabled = true\napp_token = \"xapp-1\"\n[http]\nlisten_addr = \"127.0.0.1:8443\"\n";
    let cfg = toml(&text).unwrap();
    assert!(cfg.warnings.iter().any(|w| w.contains("not both")), "{:?}", cfg.warnings);
}

#[test]
fn callback_listener_is_checked() {
    let bad = problems(&slack_with("[http]\nlisten_addr = \"nowhere\"\n"));
    assert!(bad.contains("http.listen_addr"), "{bad}");
    let same = problems(&slack_with("[http]\nlisten = \"0.0.0.0:8443\"\nlisten_addr = \"0.0.0.0:8443\"\n"));
    assert!(same.contains("must differ from http.listen"), "{same}");
    let half = problems(&slack_with("[http]\nlisten_addr = \"0.0.0.0:8443\"\nhttps_key_file = \"/k\"\n"));
    assert!(half.contains("both https_key_file and https_cert_file"), "{half}");
}

#[test]
fn review_yaml_form_is_equivalent() {
    let yaml = r##"
teleport: { addr: "auth:3025", identity: "/id" }
slack: { token: "xoxb-1", signing_secret: "s" }
role_to_recipients: { "*": "#access" }
review: { enabled: true, app_token: "xapp-1", slack_user_id_trait: "slack_id" }
http: { listen_addr: "0.0.0.0:8443" }
"##;
    let cfg = Config::parse(yaml, Format::Yaml, "t.yaml").unwrap();
    let r = slack_review(&cfg).unwrap();
    assert_eq!(r.mapping.user_id_trait, "slack_id");
    assert!(r.app_token.is_some() && r.signing_secret.is_some());
}

/// A Mattermost section as the older guides write it (team and channel).
const MATTERMOST_TEAM_CHANNEL: &str = r##"
[teleport]
addr = "auth:3025"
identity = "/id"
[mattermost]
url = "https://mm.example.com"
token = "t"
team = "eng"
channel = "access"
"##;

#[test]
fn mattermost_team_and_channel_are_the_default_recipient() {
    let text = MATTERMOST_TEAM_CHANNEL;
    let cfg = toml(text).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.chats[0].routing()["*"], vec!["eng/access"]);
    let own = toml(&format!("{text}[mattermost.role_to_recipients]\n\"*\" = \"ops/alerts\"\n")).unwrap();
    assert_eq!(own.chats[0].routing()["*"], vec!["ops/alerts"], "an explicit default wins");
    assert!(problems(&text.replace("channel = \"access\"\n", "")).contains("set both or neither"));
}

#[test]
fn mattermost_review_needs_a_secret_and_the_listener() {
    let base = MATTERMOST_TEAM_CHANNEL;
    let p = problems(&format!("{base}[mattermost.review]\nenabled = true\n"));
    assert!(p.contains("needs mattermost.secret") && p.contains("needs http.listen_addr"), "{p}");
    let ok = toml(&format!(
        "{}secret = \"k\"\n[mattermost.review]\nenabled = true\n[http]\nlisten_addr = \"0.0.0.0:8443\"\npublic_addr = \"http://plugin.teleport.svc:8443/\"\n",
        base
    ))
    .unwrap();
    let ChatConfig::Mattermost { review: Some(r), .. } = &ok.chats[0] else { panic!("review on") };
    assert_eq!(r.action_url, "http://plugin.teleport.svc:8443/mattermost/actions");
    assert_eq!(r.mapping.user_id_trait, "mattermost_user_id");
    assert!(review_summary(&ok.chats[0], &ok.http).contains("/mattermost/actions"));
}
