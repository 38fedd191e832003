//! Approve and deny from Mattermost, end to end: the plugin posts cards
//! with signed buttons, the Mattermost simulator calls their integration URL
//! as the server does (the clicking user from its session), the review desk
//! submits on behalf of the mapped Teleport user, the clicker alone reads the
//! answer, and the card loses its buttons once resolved. Forged callbacks
//! get 401 and change nothing.

mod common;

use std::time::Duration;

use serde_json::json;
use teleport_plugin::app::{Extras, Running, launch};
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin_sim::chat::{ChatSim, MattermostSim, MattermostSimConfig, SimChannel, SimUser};

use common::{Env, eventually};

const CHANNEL: &str = "accesschannel00000000000001";
const BOB: &str = "bobid000000000000000000001";
const CAROL: &str = "carolid0000000000000000001";
const ALICE: &str = "aliceid0000000000000000001";
const MALLORY: &str = "malloryid00000000000000001";

struct Setup {
    env: Env,
    mm: MattermostSim,
    running: Running,
}

async fn setup() -> Setup {
    let env = Env::new().await;
    let sim = &env.sim;
    common::review_rules(sim, &[("alice@example.com", "mattermost_user_id", ALICE), ("bob", "mattermost_user_id", BOB)]);
    // Carol has no trait: she maps by her verified email.
    sim.put_user("carol@example.com", &["reviewer"], &[]);
    let mm = MattermostSim::start(
        MattermostSimConfig::default()
            .with_user(SimUser::new(ALICE, "alice", "alice@example.com"))
            .with_user(SimUser::new(BOB, "bob", "bob@example.com"))
            .with_user(SimUser::new(CAROL, "carol", "carol@example.com"))
            .with_user(SimUser::new(MALLORY, "mallory", "mallory@example.com"))
            .with_channel(SimChannel::new(CHANNEL, "access").in_team("ops")),
    )
    .await;
    // Bind the callback listener first to learn a free port.
    let port = common::free_port();
    let text = common::with_callbacks(
        &env.config_text(&format!(
            "[mattermost]\nurl = \"{}\"\ntoken = \"mm-sim-token\"\nsecret = \"button-signing-key\"\nteam = \"ops\"\nchannel = \"access\"\n\
             [mattermost.review]\nenabled = true\nallow_email_username_match = true\n",
            mm.base_url()
        )),
        port,
    );
    let cfg = teleport_plugin::config::Config::parse(&text, teleport_plugin::config::Format::Toml, "t.toml").unwrap();
    let chats = teleport_plugin::cli::build_chats(&cfg).unwrap();
    let running = launch(&cfg, chats, Extras::default()).await.unwrap();
    assert!(running.ready(Duration::from_secs(10)).await);
    assert_eq!(running.callback_addr.unwrap().port(), port);
    Setup { env, mm, running }
}

/// The card of request `id` (the old guide's team/channel default recipient).
async fn card(mm: &MattermostSim, id: &str) -> String {
    let mut found = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            found = mm.posts_in(CHANNEL).into_iter().find(|p| p.props["teleport_request_id"] == id && p.root_id.is_empty());
            found.is_some()
        })
        .await
    );
    found.unwrap().id
}

fn has_buttons(mm: &MattermostSim, post: &str) -> bool {
    mm.post(post).unwrap().props["attachments"][0]["actions"].as_array().is_some_and(|a| a.len() == 2)
}

#[tokio::test]
async fn a_click_approves_on_behalf_and_only_the_clicker_is_told() {
    let s = setup().await;
    let r = s.env.sim.request("alice@example.com", &["editor"], "hotfix");
    let post = card(&s.mm, r.id()).await;
    assert!(has_buttons(&s.mm, &post), "pending cards carry the buttons");
    let answer = s.mm.click(BOB, &post, "approve").await.unwrap();
    assert_eq!(answer.status, 200);
    let review = &s.env.sim.get_request(r.id()).unwrap().spec.unwrap().reviews[0];
    assert_eq!(review.author, "bob");
    assert!(review.submitted_on_behalf_of_author);
    assert_eq!(review.reason, "Reviewed in Mattermost by @bob");
    let told = s.mm.ephemerals(BOB);
    assert_eq!(told.len(), 1);
    assert!(told[0].text.contains("now approved"), "{told:?}");
    assert!(s.mm.ephemerals(ALICE).is_empty() && s.mm.ephemerals(CAROL).is_empty());
    // The plugin updates the card: resolved, no buttons.
    assert!(eventually(Duration::from_secs(10), || !has_buttons(&s.mm, &post)).await, "buttons gone once resolved");
    assert!(s.mm.post(&post).unwrap().message.contains("APPROVED"));
}

#[tokio::test]
async fn refusals_are_told_to_the_clicker() {
    let s = setup().await;
    let r = s.env.sim.request("alice@example.com", &["editor"], "hotfix");
    let post = card(&s.mm, r.id()).await;
    s.mm.click(ALICE, &post, "approve").await.unwrap();
    assert!(s.mm.ephemerals(ALICE)[0].text.contains("your own access request"));
    s.mm.click(MALLORY, &post, "deny").await.unwrap();
    assert!(s.mm.ephemerals(MALLORY)[0].text.contains("not linked to a Teleport user"), "{:?}", s.mm.ephemerals(MALLORY));
    // Email matching needs a verified email.
    s.mm.set_email_verified(CAROL, false);
    s.mm.click(CAROL, &post, "deny").await.unwrap();
    assert!(s.mm.ephemerals(CAROL)[0].text.contains("no verified email"), "{:?}", s.mm.ephemerals(CAROL));
    assert!(s.env.sim.get_request(r.id()).unwrap().spec.unwrap().reviews.is_empty());
    // Verified, a fresh click maps her by email (the refusal was not cached).
    s.mm.set_email_verified(CAROL, true);
    let r2 = s.env.sim.request("alice@example.com", &["editor"], "again");
    let post2 = card(&s.mm, r2.id()).await;
    s.mm.click(CAROL, &post2, "deny").await.unwrap();
    assert_eq!(s.env.sim.get_request(r2.id()).unwrap().spec.unwrap().reviews[0].author, "carol@example.com");
}

/// A change made to a genuine callback body.
type Tamper = Box<dyn FnOnce(&mut serde_json::Value)>;

#[tokio::test]
async fn forged_callbacks_get_401_and_change_nothing() {
    let s = setup().await;
    let r = s.env.sim.request("alice@example.com", &["editor"], "hotfix");
    let other = s.env.sim.request("alice@example.com", &["editor"], "other");
    let post = card(&s.mm, r.id()).await;
    let other_post = card(&s.mm, other.id()).await;
    let other_id = other.id().to_string();
    let forgeries: Vec<(&str, Tamper)> = vec![
        ("request id altered", Box::new(move |b| b["context"]["request_id"] = json!(other_id))),
        ("action altered", Box::new(|b| b["context"]["action"] = json!("deny"))),
        ("mac missing", Box::new(|b| b["context"].as_object_mut().unwrap().remove("mac").map(|_| ()).unwrap_or(()))),
        ("no context", Box::new(|b| b["context"] = json!({}))),
        ("expiry extended", Box::new(|b| b["context"]["expires"] = json!(u64::MAX))),
    ];
    for (what, tamper) in forgeries {
        let answer = s.mm.click_with(BOB, &post, "approve", tamper).await.unwrap();
        assert_eq!(answer.status, 401, "{what}");
    }
    // A genuine context moved to another request's post: the desk refuses it.
    let ctx_of = |p: &str| s.mm.post(p).unwrap().props.clone();
    assert!(ctx_of(&post)["attachments"].is_array());
    let answer = s.mm.click_with(BOB, &other_post, "approve", |b| b["post_id"] = json!(post.clone())).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(s.mm.ephemerals(BOB).last().unwrap().text.contains("does not belong"), "{:?}", s.mm.ephemerals(BOB));
    for id in [r.id(), other.id()] {
        assert!(s.env.sim.get_request(id).unwrap().spec.unwrap().reviews.is_empty(), "nothing changed");
    }
    let text = teleport_plugin::metrics::encode(&s.running.registry);
    assert!(text.contains("teleport_plugin_callback_rejections_total{chat=\"mattermost\",reason=\"bad_signature\"} 3"), "{text}");
    assert!(text.contains("teleport_plugin_callback_rejections_total{chat=\"mattermost\",reason=\"malformed\"} 2"), "{text}");
}

#[tokio::test]
async fn clients_never_see_the_signed_context() {
    let s = setup().await;
    let r = s.env.sim.request("alice@example.com", &["editor"], "hotfix");
    let post = card(&s.mm, r.id()).await;
    let url = format!("{}/api/v4/posts/{post}", s.mm.base_url().trim_end_matches('/'));
    let served: serde_json::Value = reqwest::Client::new()
        .get(url)
        .bearer_auth("mm-sim-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let action = &served["props"]["attachments"][0]["actions"][0];
    assert_eq!(action["id"], "approve");
    assert!(action.get("integration").is_none(), "the server strips integrations: {action}");
}
