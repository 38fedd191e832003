//! The `teleport-plugin` binary: subcommands, exit codes, clean shutdown, and
//! that secrets never reach its output.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, eventually};
use teleport_plugin_sim::chat::{ChatSim, SimChannel, SlackSim, SlackSimConfig};
use teleport_plugin_sim::access::AccessRequestExt;

const BIN: &str = env!("CARGO_BIN_EXE_teleport-plugin");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

async fn run_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || run(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn version_and_configure() {
    let (code, out, _) = run(&["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("teleport-plugin v"), "{out}");
    for chat in ["slack", "discord", "mattermost"] {
        let (code, out, _) = run(&["configure", chat]);
        assert_eq!(code, 0);
        assert_eq!(out, teleport_plugin::config::example(chat).unwrap());
    }
    let (code, _, err) = run(&["configure", "irc"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid value 'irc'"), "{err}");
}

#[test]
fn help_lists_the_subcommands() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["start", "check", "configure", "version", "crdgen", "demo"] {
        assert!(out.contains(cmd), "{cmd} missing from --help:\n{out}");
    }
}

#[tokio::test]
async fn check_offline_validates_only_the_configuration() {
    let env = Env::new().await;
    let example = teleport_plugin::config::example("slack").unwrap().replace("xoxb-11xx", "/var/lib/teleport/plugins/slack/slack-token");
    let path = write(&env, "slack.toml", &example);
    let (code, out, _) = run_async(vec!["check".into(), "--offline".into(), "--config".into(), path]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✔ configuration: valid; chats: slack"), "{out}");
    let bad = write(&env, "bad.toml", "[teleport]\naddr = \"nope\"\n[slack]\n");
    let (code, out, _) = run_async(vec!["check".into(), "--offline".into(), "--config".into(), bad]).await;
    assert_eq!(code, 1);
    assert!(out.contains("teleport.addr") && out.contains("slack.token is required"), "{out}");
}

#[tokio::test]
async fn check_passes_against_the_simulator() {
    let env = Env::new().await;
    let path = write(&env, "c.toml", &env.config_text("[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n"));
    let (code, out, err) = run_async(vec!["check".into(), "--config".into(), path]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    for needle in [
        "✔ identity: user access-plugin, expires",
        &format!("✔ teleport: cluster {}, server version 17.4.2, path: direct to Auth at {}", env.sim.cluster_name(), env.sim.addr()),
        "✔ console: token accepted",
        "All checks passed.",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[tokio::test]
async fn check_fails_clearly_against_a_wrong_ca() {
    let env = Env::new().await;
    let other = teleport_plugin_sim::pki::ClusterPki::new("other.example.com").unwrap();
    std::fs::write(&env.identity_path, other.issue_identity("p", Duration::from_secs(600)).unwrap().identity_file).unwrap();
    let path = write(&env, "c.toml", &env.config_text("[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n"));
    let (code, out, _) = run_async(vec!["check".into(), "--config".into(), path]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("✘ teleport") && out.contains("not signed by any CA in the identity"), "{out}");
}

#[tokio::test]
async fn check_reports_expired_and_malformed_identities() {
    let env = Env::new().await;
    let now = std::time::SystemTime::now();
    let expired = env.sim.pki().issue_identity_between("p", now - Duration::from_secs(7200), now - Duration::from_secs(60)).unwrap();
    std::fs::write(&env.identity_path, expired.identity_file).unwrap();
    let path = write(&env, "c.toml", &env.config_text("[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n"));
    let (code, out, _) = run_async(vec!["check".into(), "--config".into(), path.clone()]).await;
    assert_eq!(code, 1);
    assert!(out.contains("✘ identity") && out.contains("expired") && out.contains("Renew it"), "{out}");

    std::fs::write(&env.identity_path, "-----BEGIN RSA PRIVATE KEY-----\nnot base64!\n").unwrap();
    let (code, out, _) = run_async(vec!["check".into(), "--config".into(), path]).await;
    assert_eq!(code, 1);
    assert!(out.contains("✘ identity") && out.contains("malformed PEM in the identity file"), "{out}");
}

#[tokio::test]
async fn start_refuses_a_bad_configuration_at_once() {
    let env = Env::new().await;
    let path = write(&env, "bad.toml", "[teleport]\nidentity = \"/nonexistent\"\n[slack]\ntoken = \"x\"\n");
    let (code, _, err) = run_async(vec!["start".into(), "--config".into(), path]).await;
    assert_eq!(code, 1);
    assert!(err.contains("role_to_recipients[\"*\"] is required"), "{err}");
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

fn drain(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (out, err)
}

/// SIGTERM: work in flight finishes, the process exits 0, nothing is lost
/// (what was left is posted by the next start), and tokens and keys never
/// appear in the output, even at debug level.
#[tokio::test]
async fn sigterm_exits_cleanly_and_secrets_never_reach_the_logs() {
    let env = Env::new().await;
    const TOKEN: &str = "xoxb-super-secret-token-0123456789";
    let slack = SlackSim::start(SlackSimConfig {
        tokens: vec![TOKEN.into()],
        ..SlackSimConfig::default().with_channel(SimChannel::new("C0ACCESS01", "access"))
    })
    .await;
    let cfg = env.config_text(&format!(
        "[slack]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\n[role_to_recipients]\n\"*\" = \"C0ACCESS01\"\n[plugin]\ninstance_id = \"cli-test\"\nshutdown_grace = \"5s\"\n[log]\nseverity = \"debug\"\n",
        slack.base_url()
    ));
    let path = write(&env, "slack.toml", &cfg);
    let mut child = spawn(&["start", "--config", &path, "--debug"]);
    // Cards per request id (from the metadata the plugin attaches), so a
    // duplicate of one request cannot hide behind a missing other.
    let cards = |slack: &SlackSim| {
        let mut per_request = std::collections::HashMap::<String, usize>::new();
        for m in slack.messages().iter().filter(|m| m.thread_ts.is_none()) {
            let md = m.metadata.as_ref().expect("cards carry metadata");
            if md["event_payload"]["kind"] == "card" {
                *per_request.entry(md["event_payload"]["request_id"].as_str().unwrap().to_string()).or_default() += 1;
            }
        }
        per_request
    };
    let posted = |slack: &SlackSim| cards(slack).len();
    let ids: Vec<String> = (0..30).map(|i| env.sim.request(&format!("u{i}"), &["x"], "sigterm").id().to_string()).collect();
    assert!(eventually(Duration::from_secs(30), || posted(&slack) >= 5).await, "the plugin started posting");
    slack.set_response_delay(Duration::from_millis(50));
    signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = child.wait().unwrap();
        (s, drain(&mut child))
    });
    let (status, (out, err)) = tokio::time::timeout(Duration::from_secs(20), status).await.expect("exits within the bound").unwrap();
    assert_eq!(status.code(), Some(0), "exit code; stderr:\n{err}");
    assert!(err.contains("Successfully shut down"), "{err}");
    slack.set_response_delay(Duration::ZERO);

    // A second start posts whatever the first left; nothing twice.
    let mut child = spawn(&["start", "--config", &path]);
    let done = eventually(Duration::from_secs(30), || posted(&slack) >= ids.len()).await;
    signal(&child, "TERM");
    let second = tokio::task::spawn_blocking(move || {
        child.wait().unwrap();
        drain(&mut child)
    })
    .await
    .unwrap();
    assert!(done, "all requests posted after the restart");
    let counts = cards(&slack);
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "request {id} posted exactly once: {counts:?}");
    }
    assert_eq!(counts.len(), ids.len(), "nothing else posted: {counts:?}");

    // No secret in any output.
    let identity = std::fs::read_to_string(&env.identity_path).unwrap();
    let key_line = identity.lines().nth(1).unwrap();
    for text in [&out, &err, &second.0, &second.1] {
        assert!(!text.contains(TOKEN), "token leaked");
        assert!(!text.contains(&TOKEN[5..20]), "token fragment leaked");
        assert!(!text.contains(key_line), "private key leaked");
    }
    assert!(err.contains("DEBUG"), "debug logging was on, so the check is meaningful");
    // Lines about a request carry its id.
    assert!(err.lines().any(|l| l.contains(&ids[0]) && l.contains("request")), "request id in logs");
}

/// Every click is one audit line (chat, chat user, Teleport user, request,
/// decision, outcome); the app token, signing secret, signatures and
/// response URLs never reach the output, even at debug level.
#[tokio::test]
async fn review_decisions_are_audited_and_secrets_stay_out_of_the_logs() {
    use teleport_plugin_sim::chat::SimUser;
    use teleport_plugin_sim::chat::slack::Forgery;
    const APP_TOKEN: &str = "xapp-1-A0SECRET-0123456789-abcdef";
    const SIGNING: &str = "signing-secret-0123456789abcdef";
    let env = Env::new().await;
    common::review_rules(&env.sim, &[("bob", "slack_user_id", "U0BOB00001")]);
    let slack = SlackSim::start(SlackSimConfig {
        app_tokens: vec![APP_TOKEN.into()],
        ..SlackSimConfig::default()
            .with_user(SimUser::new("U0BOB00001", "bob", "bob@example.com"))
            .with_channel(SimChannel::new("C0ACCESS01", "access"))
    })
    .await;
    let port = common::free_port();
    let cfg = common::with_callbacks(
        &env.config_text(&format!(
            "[slack]\ntoken = \"xoxb-sim-token\"\napi_url = \"{}\"\nsigning_secret = \"{SIGNING}\"\n[role_to_recipients]\n\"*\" = \"C0ACCESS01\"\n\
             [review]\nenabled = true\napp_token = \"{APP_TOKEN}\"\n[log]\nseverity = \"debug\"\n",
            slack.base_url()
        )),
        port,
    );
    let path = write(&env, "review.toml", &cfg);
    let mut child = spawn(&["start", "--config", &path, "--debug"]);
    assert!(eventually(Duration::from_secs(30), || slack.socket_connected()).await, "Socket Mode connected");
    let r = env.sim.request("alice", &["editor"], "audit");
    let mut ts = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            ts = slack.messages_in("C0ACCESS01").into_iter().find(|m| m.thread_ts.is_none()).map(|m| m.ts);
            ts.is_some()
        })
        .await
    );
    let ts = ts.unwrap();
    slack.click("U0BOB00001", "C0ACCESS01", &ts, "approve_button").await.unwrap();
    assert!(eventually(Duration::from_secs(30), || !slack.ephemerals("U0BOB00001").is_empty()).await);
    // A forged HTTP callback too, so its refusal is logged.
    slack.set_request_url(&format!("http://127.0.0.1:{port}/slack/interactions"), SIGNING);
    assert_eq!(slack.click_http("U0BOB00001", "C0ACCESS01", &ts, "approve_button", Some(Forgery::BadSignature)).await.unwrap(), 401);
    let response_url = slack.envelopes()[0].payload["response_url"].as_str().unwrap().to_string();
    signal(&child, "TERM");
    let (out, err) = tokio::task::spawn_blocking(move || {
        child.wait().unwrap();
        drain(&mut child)
    })
    .await
    .unwrap();
    let audit: Vec<&str> = err.lines().filter(|l| l.contains("review from chat")).collect();
    assert_eq!(audit.len(), 1, "one line per decision: {audit:?}");
    for field in ["chat=slack", "chat_user=U0BOB00001", "teleport_user=bob", &format!("request_id={}", r.id()), "decision=approve", "outcome=submitted"] {
        assert!(audit[0].contains(field), "{field} in {}", audit[0]);
    }
    assert!(err.contains("DEBUG"), "debug logging was on");
    for text in [&out, &err] {
        for secret in [APP_TOKEN, &APP_TOKEN[5..20], SIGNING, &response_url, "v0="] {
            assert!(!text.contains(secret), "{secret:?} leaked");
        }
    }
}

/// The binary under another name (a symlink, as `ln -s` in an image or a
/// package would make), in a temporary directory.
fn linked(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::os::unix::fs::symlink(BIN, &path).unwrap();
    path
}

fn run_at(bin: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin).args(args).output().expect("binary runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Run as `teleport-slack`, `teleport-discord` or `teleport-mattermost` the
/// binary is that plugin: its name, its example, its default file.
#[test]
fn official_command_names_select_the_chat() {
    let dir = tempfile::tempdir().unwrap();
    for chat in ["slack", "discord", "mattermost"] {
        let name = format!("teleport-{chat}");
        let bin = linked(dir.path(), &name);
        let (code, out, _) = run_at(&bin, &["version"]);
        assert_eq!(code, 0);
        assert_eq!(out, format!("{name} v{}\n", env!("CARGO_PKG_VERSION")));
        let (code, out, _) = run_at(&bin, &["configure"]);
        assert_eq!(code, 0);
        assert_eq!(out, teleport_plugin::config::example(chat).unwrap(), "{name} configure");
        // An explicit chat still wins.
        let (_, out, _) = run_at(&bin, &["configure", "slack"]);
        assert_eq!(out, teleport_plugin::config::example("slack").unwrap());
        let (code, out, _) = run_at(&bin, &["start", "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains(&format!("Usage: {name} start")) && out.contains(&format!("/etc/{name}.toml")), "{out}");
        if !std::path::Path::new(&format!("/etc/{name}.toml")).exists() {
            let (code, _, err) = run_at(&bin, &["start"]);
            assert_eq!(code, 1);
            assert!(err.contains(&format!("the default file /etc/{name}.toml does not exist")), "{err}");
            let other = if chat == "slack" { "discord" } else { "slack" };
            assert!(!err.contains(&format!("teleport-{other}.toml")), "only this chat's file is the default: {err}");
        }
    }
    // A copy under the official name works the same; any other name is the
    // multi-chat binary.
    let copy = dir.path().join("teleport-discord-copy").with_file_name("teleport-discord.exe");
    std::fs::copy(BIN, &copy).unwrap();
    assert_eq!(run_at(&copy, &["version"]).1, format!("teleport-discord v{}\n", env!("CARGO_PKG_VERSION")));
    let other = linked(dir.path(), "access-bot");
    assert!(run_at(&other, &["version"]).1.starts_with("teleport-plugin v"));
    assert_eq!(run_at(&other, &["configure"]).1, teleport_plugin::config::example("slack").unwrap());
}

/// Redirected output (every pod) carries no ANSI escape codes, and a fatal
/// error appears once, not as a log line plus a second plain copy.
#[tokio::test]
async fn redirected_logs_are_plain_and_a_fatal_error_is_printed_once() {
    let env = Env::new().await;
    std::fs::write(&env.identity_path, "-----BEGIN RSA PRIVATE KEY-----\nnot base64!\n").unwrap();
    let path = write(&env, "c.toml", &env.config_text("[console]\n[role_to_recipients]\n\"*\" = \"#a\"\n"));
    let (code, out, err) = run_async(vec!["start".into(), "--config".into(), path]).await;
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains('\u{1b}') && !out.contains('\u{1b}'), "ANSI escapes in redirected output:\n{err:?}");
    let fatal: Vec<&str> = err.lines().chain(out.lines()).filter(|l| l.contains("malformed PEM")).collect();
    assert_eq!(fatal.len(), 1, "the fatal error once:\n{err}");
    assert!(fatal[0].contains("ERROR") && fatal[0].contains("Terminating with fatal error"), "{err}");

    // Before the log is set up (no configuration), the error is on stderr once.
    let needle = env.dir.path().join("no-such.toml").display().to_string();
    let (code, _, err) = run_async(vec!["start".into(), "--config".into(), needle.clone()]).await;
    assert_eq!(code, 1);
    assert_eq!(err.matches(&needle).count(), 1, "{err}");
}
