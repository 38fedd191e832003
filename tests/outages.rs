//! State changes during outages: a request is reviewed, one approved, one
//! denied and one expires while Auth is unreachable, while the event stream
//! is down, and while the plugin is killed (`kill -9`, the real binary), in
//! each chat. Whatever the outage, every card ends in its request's final
//! state, the review is shown once, each approved, denied or expired request's
//! requester gets exactly one notice, and nothing is posted twice.

mod common;

use std::time::Duration;

use common::chats::Sim;
use common::{Env, Spawned, eventually};
use teleport_plugin::teleport::StreamState;
use teleport_plugin_sim::access::AccessRequestExt;
use tonic::Status;

/// Known to every chat simulator, so requester notices can be delivered.
const REQUESTER: &str = "alice@example.com";

#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Connections cut and refused for a while (an Auth restart).
    AuthUnreachable,
    /// The watch stream ends and re-opening it fails for a while; unary
    /// calls still work.
    StreamDown,
    /// The plugin process is killed and started again afterwards.
    Killed,
}

/// The requests of one run: each gets a different change during the outage.
struct Requests {
    reviewed: String,
    approved: String,
    denied: String,
    expired: String,
    untouched: String,
}

impl Requests {
    fn create(env: &Env) -> Self {
        let new = |reason: &str| env.sim.request(REQUESTER, &["editor"], reason).id().to_string();
        Self {
            reviewed: new("reviewed during the outage"),
            approved: new("approved during the outage"),
            denied: new("denied during the outage"),
            expired: new("expires during the outage"),
            untouched: new("nothing happens to it"),
        }
    }

    fn all(&self) -> [&str; 5] {
        [&self.reviewed, &self.approved, &self.denied, &self.expired, &self.untouched]
    }

    /// The changes made while the plugin cannot see them.
    fn change(&self, env: &Env) {
        env.sim.review(&self.reviewed, "dave", true, "reviewed while you were away");
        env.sim.approve(&self.approved, "approved while you were away");
        env.sim.deny(&self.denied, "denied while you were away");
        assert!(env.sim.expire(&self.expired));
    }
}

/// The plugin under test: in-process (its stream can be watched) or a real
/// process (so it can be killed), with its metrics address.
enum Plugin {
    InProcess(Box<teleport_plugin::app::Running>),
    Process(Spawned, String),
}

impl Plugin {
    async fn idle(&self, timeout: Duration) -> bool {
        match self {
            Plugin::InProcess(r) => common::wait_idle(&[r.as_ref()], timeout).await,
            Plugin::Process(_, metrics) => common::wait_idle_metrics(std::slice::from_ref(metrics), timeout).await,
        }
    }

    async fn stop(self) {
        match self {
            Plugin::InProcess(r) => {
                (*r).stop(Duration::from_secs(5)).await;
            }
            Plugin::Process(mut c, _) => c.kill(),
        }
    }
}

/// A configuration file for the real binary, metrics on a free port.
fn process_config(env: &Env, sim: &Sim) -> (String, String) {
    let (text, addr) = common::with_metrics(&env.config_text(&format!("{}[plugin]\ninstance_id = \"outages\"\n", sim.section())));
    let path = env.dir.path().join("plugin.toml");
    std::fs::write(&path, text).unwrap();
    (path.display().to_string(), addr)
}

fn spawn(config: &str, metrics: &str) -> Plugin {
    Plugin::Process(common::spawn_plugin(config), metrics.to_string())
}

async fn not_live(running: &teleport_plugin::app::Running) {
    let mut stream = running.stream.clone();
    let down = tokio::time::timeout(Duration::from_secs(10), stream.wait_for(|s| !matches!(s, StreamState::Live { .. })));
    assert!(matches!(down.await, Ok(Ok(_))), "the stream went down");
}

async fn run(which: &str, outage: Outage) {
    let env = Env::new().await;
    let sim = Sim::start(which).await;
    let (config, metrics) = process_config(&env, &sim);
    let plugin = match outage {
        Outage::Killed => spawn(&config, &metrics),
        _ => Plugin::InProcess(Box::new(common::start_plugin(&env, &sim, "[plugin]\ninstance_id = \"outages\"\n").await)),
    };
    let reqs = Requests::create(&env);
    let posted = eventually(Duration::from_secs(30), || reqs.all().iter().all(|id| sim.cards(id).len() == 1)).await;
    assert!(posted, "{which}: every card posted before the outage");
    assert!(plugin.idle(Duration::from_secs(30)).await, "{which}: idle before the outage");
    let inits = env.sim.watch_inits().len();

    let plugin = match (outage, plugin) {
        (Outage::AuthUnreachable, Plugin::InProcess(running)) => {
            env.sim.refuse_connections_for(Duration::from_secs(3));
            env.sim.drop_connections();
            not_live(&running).await;
            reqs.change(&env);
            Plugin::InProcess(running)
        }
        (Outage::StreamDown, Plugin::InProcess(running)) => {
            for _ in 0..4 {
                env.sim.fail_next("WatchEvents", Status::unavailable("watcher restarting"));
            }
            env.sim.drop_streams();
            not_live(&running).await;
            reqs.change(&env);
            Plugin::InProcess(running)
        }
        (Outage::Killed, plugin) => {
            plugin.stop().await; // SIGKILL
            reqs.change(&env);
            spawn(&config, &metrics)
        }
        (o, _) => unreachable!("{o:?}"),
    };

    // The outage landed: the plugin opened a new stream afterwards.
    let reopened = env.sim.wait_until(Duration::from_secs(30), |s| s.watch_inits().len() > inits).await;
    assert!(reopened, "{which} {outage:?}: a new stream after the outage");
    let text = |id: &str| sim.cards(id).first().map(|c| c.text.clone()).unwrap_or_default();
    let final_states = || {
        text(&reqs.approved).contains("APPROVED")
            && text(&reqs.denied).contains("DENIED")
            && text(&reqs.expired).contains("EXPIRED")
    };
    assert!(eventually(Duration::from_secs(30), final_states).await, "{which} {outage:?}: final states shown");
    let review_shown = |sim: &Sim| match which {
        // Discord shows reviews in an embed on the card, the others in the thread.
        "discord" => usize::from(text(&reqs.reviewed).contains("reviewed while you were away")),
        _ => sim.messages().iter().filter(|m| m.request == reqs.reviewed && m.kind == "review-0").count(),
    };
    assert!(eventually(Duration::from_secs(30), || review_shown(&sim) == 1).await, "{which} {outage:?}: review shown");
    assert!(plugin.idle(Duration::from_secs(30)).await, "{which} {outage:?}: idle after the outage");

    let counts = sim.card_counts();
    for id in reqs.all() {
        assert_eq!(counts.get(id), Some(&1), "{which} {outage:?}: one card for {id}: {counts:?}");
    }
    assert_eq!(review_shown(&sim), 1, "{which} {outage:?}: the review shown once");
    for id in [&reqs.reviewed, &reqs.untouched] {
        let data = env.sim.plugin_data(id, which).expect("plugin data");
        let resolution = data.get("resolution").map(String::as_str).unwrap_or_default();
        assert!(!["APPROVED", "DENIED", "EXPIRED"].contains(&resolution), "{which} {outage:?}: {id} still pending: {data:?}");
        let t = text(id);
        assert!(!t.contains("EXPIRED") && !t.contains("DENIED"), "{which} {outage:?}: {id} card still pending: {t}");
    }
    let reviews = env.sim.plugin_data(&reqs.reviewed, which).expect("plugin data");
    assert_eq!(reviews.get("reviews_count").map(String::as_str), Some("1"), "{which} {outage:?}: the review recorded");
    let notices = |id: &str| sim.messages().iter().filter(|m| m.request == id && m.kind == "notice").count();
    for (id, what, want) in [
        (&reqs.approved, "approved", 1),
        (&reqs.denied, "denied", 1),
        (&reqs.expired, "expired", 1),
        (&reqs.reviewed, "reviewed", 0),
        (&reqs.untouched, "untouched", 0),
    ] {
        assert_eq!(notices(id), want, "{which} {outage:?}: requester notices for the {what} request");
    }
    for (id, resolution) in [(&reqs.approved, "APPROVED"), (&reqs.denied, "DENIED"), (&reqs.expired, "EXPIRED")] {
        let data = env.sim.plugin_data(id, which).expect("plugin data");
        assert_eq!(data.get("resolution").map(String::as_str), Some(resolution), "{which} {outage:?}: {id}");
    }
    plugin.stop().await;
}

macro_rules! outage_tests {
    ($($name:ident: $chat:literal, $outage:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                run($chat, $outage).await;
            }
        )*
    };
}

outage_tests! {
    slack_auth_unreachable: "slack", Outage::AuthUnreachable;
    slack_stream_down: "slack", Outage::StreamDown;
    slack_killed: "slack", Outage::Killed;
    discord_auth_unreachable: "discord", Outage::AuthUnreachable;
    discord_stream_down: "discord", Outage::StreamDown;
    discord_killed: "discord", Outage::Killed;
    mattermost_auth_unreachable: "mattermost", Outage::AuthUnreachable;
    mattermost_stream_down: "mattermost", Outage::StreamDown;
    mattermost_killed: "mattermost", Outage::Killed;
}
