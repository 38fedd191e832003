//! Review from Discord with the whole plugin running against the Discord and
//! Teleport simulators: clicks over the Gateway (through reconnects, drops
//! and redeliveries) and over the signed HTTP interactions endpoint, the
//! clicker's ephemeral answers, and the card losing its buttons.

mod common;

use std::time::Duration;

use teleport_plugin::app::Running;
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin_sim::chat::discord::interactions::{Forgery, new_keypair};
use teleport_plugin_sim::chat::{ChatSim, DiscordMessage, DiscordSim, DiscordSimConfig, SimChannel, SimUser};

use common::{Env, eventually};

const CHANNEL: &str = "100000000000000001";
const ALICE: &str = "300000000000000001";
const BOB: &str = "300000000000000002";
const CAROL: &str = "300000000000000003";
const MALLORY: &str = "300000000000000009";
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    env: Env,
    discord: DiscordSim,
    running: Running,
}

/// alice requests `editor`; bob reviews it (trait); carol too, mapped only
/// through `[discord.users]`; mallory is nobody. `http`: the HTTP endpoint
/// with this public key instead of the Gateway.
async fn setup(http: Option<&str>) -> Setup {
    let env = Env::new().await;
    let sim = &env.sim;
    common::review_rules(sim, &[("alice", "discord_user_id", ALICE), ("bob", "discord_user_id", BOB)]);
    sim.put_user("carol", &["reviewer"], &[]);
    let discord = DiscordSim::start(
        DiscordSimConfig::default()
            .with_user(SimUser::new(ALICE, "alice", "alice@example.com"))
            .with_user(SimUser::new(BOB, "bob", "bob@example.com"))
            .with_user(SimUser::new(CAROL, "carol", "carol@example.com"))
            .with_user(SimUser::new(MALLORY, "mallory", "mallory@example.com"))
            .with_channel(SimChannel::new(CHANNEL, "access")),
    )
    .await;
    let (listener, key) = match http {
        Some(k) => ("listen_addr = \"127.0.0.1:0\"\n".to_string(), format!("public_key = \"{k}\"\n")),
        None => (String::new(), String::new()),
    };
    let text = format!(
        "{listener}[discord]\ntoken = \"discord-sim-token\"\napi_url = \"{}\"\n{key}[discord.users]\n\"carol\" = \"{CAROL}\"\n[discord.review]\nenabled = true\n[role_to_recipients]\n\"*\" = \"{CHANNEL}\"\n",
        discord.base_url()
    );
    let cfg = env.config(&text);
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = teleport_plugin::app::launch(&cfg, chats, teleport_plugin::app::Extras::default()).await.expect("launch");
    assert!(running.ready(WAIT).await);
    if http.is_none() {
        discord.gateway().wait_live(1, WAIT).await.unwrap();
    }
    Setup { env, discord, running }
}

fn approve(id: &str) -> String {
    format!("tp:approve:{id}")
}

/// The card of request `id`, once it carries buttons.
async fn card(d: &DiscordSim, id: &str) -> DiscordMessage {
    let find = || d.messages_in(CHANNEL).into_iter().find(|m| serde_json::Value::from(m.components.clone()).to_string().contains(&approve(id)));
    assert!(eventually(WAIT, || find().is_some()).await, "no card with buttons for {id}: {:?}", d.messages());
    find().unwrap()
}

fn reviews(s: &Setup, id: &str) -> Vec<(String, bool)> {
    let r = s.env.sim.get_request(id).unwrap().spec.unwrap().reviews;
    r.into_iter().map(|r| (r.author, r.proposed_state == 2)).collect()
}

async fn ephemeral(d: &DiscordSim, user: &str, n: usize) -> Vec<String> {
    assert!(eventually(WAIT, || d.ephemerals(user).len() >= n).await, "{user} saw {:?}; {:?}", d.ephemerals(user), d.interactions());
    d.ephemerals(user)
}

#[tokio::test]
async fn a_gateway_click_approves_for_the_mapped_user_who_alone_sees_the_answer() {
    let s = setup(None).await;
    let r = s.env.sim.request("alice", &["editor"], "hotfix");
    let c = card(&s.discord, r.id()).await;
    let row = &c.components[0]["components"];
    assert_eq!((row[0]["style"].as_u64(), row[1]["style"].as_u64()), (Some(3), Some(4)), "{row}");
    assert_eq!(row[1]["custom_id"], format!("tp:deny:{}", r.id()));

    s.discord.click(BOB, CHANNEL, &c.id, &approve(r.id())).await.unwrap();
    let seen = ephemeral(&s.discord, BOB, 1).await;
    assert!(seen[0].contains(&format!("You approved request {}", r.id())) && seen[0].contains("now approved"), "{seen:?}");
    assert_eq!(reviews(&s, r.id()), vec![("bob".to_string(), true)]);
    let i = &s.discord.interactions()[0];
    assert_eq!((i.response_type, i.ephemeral, i.late_responses), (Some(5), true, 0), "deferred, ephemeral, in time");
    assert!(s.discord.ephemerals(ALICE).is_empty() && s.discord.ephemerals(CAROL).is_empty());
    assert!(
        eventually(WAIT, || s.discord.message(&c.id).is_some_and(|m| m.components.is_empty() && m.content.contains("APPROVED"))).await,
        "the resolved card loses its buttons: {:?}",
        s.discord.message(&c.id)
    );
    assert!(s.discord.gateway().log().identifies.iter().all(|(ok, intents)| *ok && *intents == Some(0)));
    assert!(s.discord.gateway().log().heartbeat_errors.is_empty(), "{:?}", s.discord.gateway().log());
    let text = teleport_plugin::metrics::encode(&s.running.registry);
    assert!(text.contains("teleport_plugin_click_connection_up{chat=\"discord\"} 1"), "{text}");
}

#[tokio::test]
async fn own_requests_and_unmapped_clickers_are_refused_with_a_reason() {
    let s = setup(None).await;
    let r = s.env.sim.request("alice", &["editor"], "mine");
    let c = card(&s.discord, r.id()).await;
    s.discord.click(ALICE, CHANNEL, &c.id, &approve(r.id())).await.unwrap();
    assert_eq!(ephemeral(&s.discord, ALICE, 1).await, vec!["You cannot review your own access request.".to_string()]);
    s.discord.click(MALLORY, CHANNEL, &c.id, &format!("tp:deny:{}", r.id())).await.unwrap();
    let seen = ephemeral(&s.discord, MALLORY, 1).await;
    assert!(seen[0].contains("not linked to a Teleport user") && seen[0].contains("discord_user_id"), "{seen:?}");
    assert!(reviews(&s, r.id()).is_empty());
    assert!(s.discord.click(BOB, CHANNEL, &c.id, "tp:approve:other").await.is_err(), "only buttons on the card can be clicked");
}

#[tokio::test]
async fn reverse_users_table_maps_a_clicker_without_the_trait() {
    let s = setup(None).await;
    let r = s.env.sim.request("alice", &["editor"], "carol reviews");
    let c = card(&s.discord, r.id()).await;
    s.discord.click(CAROL, CHANNEL, &c.id, &format!("tp:deny:{}", r.id())).await.unwrap();
    let seen = ephemeral(&s.discord, CAROL, 1).await;
    assert!(seen[0].contains("You denied request") && seen[0].contains("now denied"), "{seen:?}");
    assert_eq!(reviews(&s, r.id()), vec![("carol".to_string(), false)]);
}

#[tokio::test]
async fn clicks_after_reconnects_and_drops_make_exactly_one_review_each() {
    let s = setup(None).await;
    let gw = s.discord.gateway();
    // RECONNECT: the client resumes on the resume URL with its last seq.
    assert!(gw.reconnect());
    gw.wait_live(2, WAIT).await.unwrap();
    let r = s.env.sim.request("alice", &["editor"], "after reconnect");
    let c = card(&s.discord, r.id()).await;
    s.discord.click(BOB, CHANNEL, &c.id, &approve(r.id())).await.unwrap();
    ephemeral(&s.discord, BOB, 1).await;
    assert_eq!(reviews(&s, r.id()).len(), 1);
    let log = gw.log();
    assert_eq!(log.identifies.len(), 1, "resumed, not identified again: {log:?}");
    assert!(log.resumes.iter().any(|(_, on_resume_url, accepted)| *on_resume_url && *accepted), "{log:?}");

    // An abrupt drop with a click while the client is away: replayed on RESUME.
    let r2 = s.env.sim.request("alice", &["editor"], "after a drop");
    let c2 = card(&s.discord, r2.id()).await;
    assert!(gw.drop_connection());
    s.discord.click(BOB, CHANNEL, &c2.id, &approve(r2.id())).await.unwrap();
    ephemeral(&s.discord, BOB, 2).await;
    gw.wait_live(3, WAIT).await.unwrap();
    assert_eq!(reviews(&s, r2.id()).len(), 1);

    // INVALID_SESSION false: a fresh IDENTIFY, then clicks work again.
    assert!(gw.invalidate_session(false));
    gw.wait_live(4, Duration::from_secs(20)).await.unwrap();
    assert_eq!(gw.log().identifies.len(), 2, "{:?}", gw.log());
    let r3 = s.env.sim.request("alice", &["editor"], "after a new session");
    let c3 = card(&s.discord, r3.id()).await;
    s.discord.click(BOB, CHANNEL, &c3.id, &approve(r3.id())).await.unwrap();
    ephemeral(&s.discord, BOB, 3).await;
    assert_eq!(reviews(&s, r3.id()).len(), 1);
    assert!(gw.log().heartbeat_errors.is_empty(), "{:?}", gw.log());
}

#[tokio::test]
async fn a_redelivered_interaction_and_a_double_click_make_one_review() {
    let s = setup(None).await;
    let r = s.env.sim.request("alice", &["editor"], "twice");
    let c = card(&s.discord, r.id()).await;
    let first = s.discord.click(BOB, CHANNEL, &c.id, &approve(r.id())).await.unwrap();
    // A second click on the same button before the card changes.
    s.discord.click(BOB, CHANNEL, &c.id, &approve(r.id())).await.unwrap();
    s.discord.redeliver(&first.interaction_id).await.unwrap();
    let seen = ephemeral(&s.discord, BOB, 2).await;
    assert_eq!(seen[0], seen[1], "the double click gets the first click's outcome");
    assert!(seen[0].contains("now approved"), "{seen:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reviews(&s, r.id()).len(), 1);
    assert_eq!(s.discord.ephemerals(BOB).len(), 2, "the redelivery is not answered again");
    let answered: Vec<_> = s.discord.interactions().into_iter().filter(|i| i.id == first.interaction_id).collect();
    assert_eq!((answered[0].response_type, answered[0].repeat_responses), (Some(5), 0), "answered once: {answered:?}");
}

#[tokio::test]
async fn the_http_endpoint_answers_pings_takes_signed_clicks_and_refuses_forgeries() {
    let (pair, public) = new_keypair();
    let s = setup(Some(&public)).await;
    let addr = s.running.callback_addr.expect("the callback listener runs");
    s.discord.set_interactions_endpoint(Some((&format!("http://{addr}/discord/interactions"), pair)));
    let pong = s.discord.ping_endpoint().await.unwrap();
    assert_eq!((pong.status, pong.body.clone()), (200, serde_json::json!({"type": 1})));

    let r = s.env.sim.request("alice", &["editor"], "over http");
    let c = card(&s.discord, r.id()).await;
    for forgery in [Forgery::BadSignature, Forgery::MissingSignature, Forgery::MissingTimestamp, Forgery::AlteredBody, Forgery::StaleTimestamp] {
        let reply = s.discord.forged_click(BOB, CHANNEL, &c.id, &approve(r.id()), forgery).await.unwrap();
        assert_eq!(reply.status, 401, "{forgery:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(reviews(&s, r.id()).is_empty(), "forged clicks change nothing");
    assert!(s.discord.ephemerals(BOB).is_empty());
    let text = teleport_plugin::metrics::encode(&s.running.registry);
    assert!(text.contains("chat=\"discord\",reason=\"bad_signature\"} 2"), "{text}");
    assert!(text.contains("chat=\"discord\",reason=\"missing_signature\"} 2"), "{text}");
    assert!(text.contains("chat=\"discord\",reason=\"stale_timestamp\"} 1"), "{text}");

    let sent = s.discord.click(BOB, CHANNEL, &c.id, &approve(r.id())).await.unwrap();
    let reply = sent.reply.expect("delivered over HTTP");
    assert_eq!((reply.status, reply.body), (200, serde_json::json!({"type": 5, "data": {"flags": 64}})));
    let seen = ephemeral(&s.discord, BOB, 1).await;
    assert!(seen[0].contains("now approved"), "{seen:?}");
    assert_eq!(reviews(&s, r.id()), vec![("bob".to_string(), true)]);
    // The same signed request again: answered, not decided again.
    let again = s.discord.redeliver(&sent.interaction_id).await.unwrap().unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(reviews(&s, r.id()).len(), 1);
    assert_eq!(s.discord.gateway().log().connections, 0, "no Gateway when the endpoint is used");
}

/// The Discord client's click transports alone; `extra` goes under `[discord]`.
fn transports(
    discord: &DiscordSim,
    extra: &str,
) -> (teleport_plugin::chat::click::ClickTransports, tokio::sync::mpsc::Receiver<teleport_plugin::chat::click::PendingClick>, tokio_util::sync::CancellationToken) {
    use std::sync::Arc;
    common::init();
    let http = if extra.contains("public_key") { "[http]\nlisten_addr = \"127.0.0.1:0\"\n" } else { "" };
    let text = format!(
        "[teleport]\naddr = \"auth.example.com:3025\"\nidentity = \"/nonexistent\"\n{http}[discord]\ntoken = \"discord-sim-token\"\napi_url = \"{}\"\n{extra}[discord.review]\nenabled = true\n[role_to_recipients]\n\"*\" = \"{CHANNEL}\"\n",
        discord.base_url()
    );
    let cfg = teleport_plugin::config::Config::parse_with(&text, teleport_plugin::config::Format::Toml, "t.toml", false).unwrap();
    let chat = teleport_plugin::chat::build(&cfg.chats[0]).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let stop = tokio_util::sync::CancellationToken::new();
    let ctx = teleport_plugin::chat::click::ClickContext { desk: tx, rejections: Default::default(), stop: stop.clone() };
    let t = Arc::clone(&chat).start_clicks(&cfg.chats[0], ctx).unwrap();
    (t, rx, stop)
}

#[tokio::test]
async fn a_refused_token_ends_the_link_with_the_key_to_fix() {
    use teleport_plugin::chat::click::LinkState;
    let discord = DiscordSim::start(DiscordSimConfig::default()).await;
    let (t, _rx, stop) = transports(&discord, "");
    assert!(t.routes.is_none(), "the Gateway, not the endpoint");
    let (what, mut link) = t.link.expect("a Gateway link");
    assert_eq!(what, "Discord Gateway");
    discord.gateway().wait_live(1, WAIT).await.unwrap();
    tokio::time::timeout(WAIT, link.wait_for(|s| *s == LinkState::Connected)).await.unwrap().unwrap();
    // The token is revoked: the Gateway closes with 4004, and no reconnect follows.
    discord.revoke_token("discord-sim-token");
    assert!(discord.gateway().close(4004));
    let state = tokio::time::timeout(WAIT, link.wait_for(|s| matches!(s, LinkState::Unavailable(_)))).await.unwrap().unwrap().clone();
    let LinkState::Unavailable(why) = state else { unreachable!() };
    assert!(why.contains("4004") && why.contains("discord.token"), "{why}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(discord.gateway().log().connections, 1, "no reconnect after 4004: {:?}", discord.gateway().log());
    assert!(!why.contains("discord-sim-token"));

    // Refused from the start (GET /gateway/bot answers 401): unavailable too.
    let (t, _rx2, stop2) = transports(&discord, "");
    let (_, mut link) = t.link.unwrap();
    let state = tokio::time::timeout(WAIT, link.wait_for(|s| matches!(s, LinkState::Unavailable(_)))).await.unwrap().unwrap().clone();
    assert!(matches!(&state, LinkState::Unavailable(w) if w.contains("discord.token")), "{state:?}");
    stop.cancel();
    stop2.cancel();
}

#[tokio::test]
async fn a_public_key_serves_the_endpoint_instead_of_the_gateway() {
    let discord = DiscordSim::start(DiscordSimConfig::default()).await;
    let key = "0f".repeat(32);
    let (t, _rx, stop) = transports(&discord, &format!("public_key = \"{key}\"\n"));
    assert!(t.routes.is_some() && t.link.is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(discord.gateway().log().connections, 0);
    stop.cancel();
}
