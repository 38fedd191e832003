//! Benchmarks of the real `teleport-plugin` binary against the Teleport and
//! Slack simulators on loopback, with the floor measured in the same run.
//!
//!     cargo bench --bench notify                  # full run (report below)
//!     BENCH_SCALE=0.1 cargo bench --bench notify  # a quick, smaller run
//!     BENCH_ONLY=rate_limits cargo bench --bench notify  # one part: `throughput`, `rate_limits`, `restart` or `clicks`
//!
//! Prints every figure BENCHMARKS.md lists and writes them as JSON to
//! `target/bench-report.json` (`target/bench-report-<part>.json` for one part).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use teleport_plugin::identity::parse_identity_file;
use teleport_plugin_sim::chat::{ChatSim, POST_LIMIT, RateWindow, SimChannel, SimUser, SlackSim, SlackSimConfig};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};
use teleport_plugin_sim::access::AccessRequestExt;
use teleport_plugin::teleport::{ChannelOptions, DirectDialer, Feed, TeleportClient, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_teleport-plugin");
const CHANNEL: &str = "C0BENCH001";
const TOKEN: &str = "xoxb-sim-token";

fn scale() -> f64 {
    std::env::var("BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)
}

/// Percentile of sorted durations, in milliseconds.
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn summary(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    json!({"n": v.len(), "p50_ms": pct(&v, 0.50), "p99_ms": pct(&v, 0.99), "max_ms": pct(&v, 1.0)})
}

/// Resident set size of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Where the resident memory of `pid` is, by mapping (largest first): resident,
/// of it referenced (the kernel's accessed count) and anonymous (not file-backed).
fn print_rss_by_mapping(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: HashMap<String, [u64; 3]> = HashMap::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let kb = || fields.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match fields.first() {
            Some(f) if f.contains('-') && !f.ends_with(':') => {
                current = fields.get(5).map(|s| s.to_string()).unwrap_or_else(|| "[anon]".into());
            }
            Some(&"Rss:") => by.entry(current.clone()).or_default()[0] += kb(),
            Some(&"Referenced:") => by.entry(current.clone()).or_default()[1] += kb(),
            Some(&"Anonymous:") => by.entry(current.clone()).or_default()[2] += kb(),
            _ => {}
        }
    }
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by_key(|entry| std::cmp::Reverse(entry.1[0]));
    println!("  resident KiB (referenced, anonymous)  mapping");
    for (name, [rss, referenced, anon]) in v.iter().take(12) {
        println!("  {rss:>8} ({referenced:>8}, {anon:>8})  {name}");
    }
}

/// User + system CPU time of `pid`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ")".
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    let hz = clock_ticks();
    Duration::from_secs_f64(ticks as f64 / hz)
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Cards posted per request id (from the metadata the plugin attaches).
fn cards(slack: &SlackSim) -> HashMap<String, (usize, Instant)> {
    let mut out: HashMap<String, (usize, Instant)> = HashMap::new();
    let received: HashMap<String, Instant> = slack
        .calls()
        .into_iter()
        .filter(|c| c.endpoint == "chat.postMessage" && c.status == 200)
        .filter_map(|c| Some((c.response["ts"].as_str()?.to_string(), c.received_at)))
        .collect();
    for m in slack.messages_in(CHANNEL) {
        let Some(id) = m.metadata.as_ref().and_then(|md| md["event_payload"]["request_id"].as_str().map(String::from)) else {
            continue;
        };
        let at = received.get(&m.ts).copied().unwrap_or_else(Instant::now);
        let e = out.entry(id).or_insert((0, at));
        e.0 += 1;
        e.1 = e.1.min(at);
    }
    out
}

/// Counts successful posts as the chat simulator records them, so waiting
/// costs the harness (which shares the machine with the plugin) nothing.
fn post_counter(slack: &SlackSim) -> Arc<std::sync::atomic::AtomicUsize> {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut rx = slack.subscribe();
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(call) if call.endpoint == "chat.postMessage" && call.status == 200 => {
                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
    count
}

async fn wait_count(count: &std::sync::atomic::AtomicUsize, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while count.load(std::sync::atomic::Ordering::Relaxed) < n {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    f()
}

/// The floor: one watch event delivered over gRPC, then one HTTP POST to the
/// chat, with nothing between them.
async fn floor(samples: usize) -> serde_json::Value {
    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    let slack = SlackSim::start(SlackSimConfig::default().with_channel(SimChannel::new(CHANNEL, "bench"))).await;
    let id = Arc::new(parse_identity_file(sim.issue_identity("floor", Duration::from_secs(600)).unwrap().identity_file.as_bytes()).unwrap());
    let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
    let (client, _) = TeleportClient::connect(dialer, id, ChannelOptions::default()).await.unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    tokio::spawn(Watcher::new(Arc::new(client), tx).run(stop.clone()));
    while let Some(f) = rx.recv().await {
        if matches!(f, Feed::CaughtUp { .. }) {
            break;
        }
    }
    let http = reqwest::Client::new();
    let url = format!("{}chat.postMessage", slack.base_url());
    let mut lat = Vec::new();
    for i in 0..samples {
        let req = sim.request(&format!("u{i}"), &["r"], "");
        loop {
            if let Some(Feed::Put(r)) = rx.recv().await
                && r.id == req.id()
            {
                break;
            }
        }
        http.post(&url)
            .bearer_auth(TOKEN)
            .json(&json!({"channel": CHANNEL, "text": req.id()}))
            .send()
            .await
            .unwrap();
        let received = slack.calls().last().unwrap().received_at;
        lat.push(received - sim.emitted_at(req.id()).unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    summary(lat)
}

struct Plugin {
    child: Child,
    ready_after: Duration,
}

fn start_plugin(config: &str) -> Plugin {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["start", "--config", config])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let ready_after = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("Plugin is ready") => break started.elapsed(),
            Some(Ok(_)) => {}
            _ => panic!("the plugin exited before it was ready"),
        }
    };
    // Keep draining stderr so the plugin never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Plugin { child, ready_after }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run());
}

/// Like [`wait`] for checks that are expensive (a scan of every recorded
/// call): four times a second.
async fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    f()
}

fn slack_calls(slack: &SlackSim, endpoint: &str) -> usize {
    slack.calls().iter().filter(|c| c.endpoint == endpoint && c.status == 200).count()
}

fn stop_plugin(mut plugin: Plugin) {
    let _ = Command::new("kill").args(["-TERM", &plugin.child.id().to_string()]).status();
    let _ = plugin.child.wait();
}

/// Restart with 20,000 requests alive (half resolved, every card current):
/// the Auth RPCs and chat calls the restarted plugin makes, and the time
/// from spawning it to "Plugin is ready" and to the end of its catch-up.
async fn restart(s: f64) -> serde_json::Value {
    let total = ((20_000.0 * s) as usize).max(100);
    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    let slack = SlackSim::start(SlackSimConfig::default().with_channel(SimChannel::new(CHANNEL, "bench"))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = plugin_config(dir.path(), &sim, &slack, &[], "", "[plugin]\nconcurrency = 64\n");

    // Fill: every request posted, every other one approved and its card updated.
    let plugin = start_plugin(config.to_str().unwrap());
    let ids: Vec<String> = (0..total).map(|i| sim.request(&format!("r{i}@example.com"), &["editor"], "restart").id().to_string()).collect();
    let posted = poll(Duration::from_secs(900), || slack_calls(&slack, "chat.postMessage") >= total).await;
    assert!(posted, "fill: all posted");
    for id in ids.iter().step_by(2) {
        sim.approve(id, "ok");
    }
    let resolved = total.div_ceil(2);
    let updated = poll(Duration::from_secs(900), || slack_calls(&slack, "chat.update") >= resolved).await;
    assert!(updated, "fill: resolved cards updated");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_plugin(plugin);

    let rpc = |m: &str| sim.calls(m);
    let before: Vec<u64> = ["GetPluginData", "UpdatePluginData", "ListAccessRequests"].iter().map(|m| rpc(m)).collect();
    let chat_before = slack.calls().len();
    let t0 = Instant::now();
    let plugin = start_plugin(config.to_str().unwrap());
    let ready = plugin.ready_after;
    // The catch-up is over when the listing has stopped for 2 s.
    let mut last = (rpc("ListAccessRequests"), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = rpc("ListAccessRequests");
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.0 > before[2] && last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let caught_up = last.1 - t0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<u64> = ["GetPluginData", "UpdatePluginData", "ListAccessRequests"].iter().map(|m| rpc(m)).collect();
    let chat_calls = slack.calls().len() - chat_before;
    stop_plugin(plugin);
    let report = json!({
        "requests": total,
        "resolved": resolved,
        "start_to_ready_ms": ready.as_secs_f64() * 1e3,
        "start_to_caught_up_ms": caught_up.as_secs_f64() * 1e3,
        "rpcs": {
            "GetPluginData": after[0] - before[0],
            "UpdatePluginData": after[1] - before[1],
            "ListAccessRequests": after[2] - before[2],
        },
        "chat_calls": chat_calls,
    });
    println!(
        "restart with {total} requests ({resolved} resolved): ready in {:.0} ms, caught up in {:.0} ms; GetPluginData {}, UpdatePluginData {}, ListAccessRequests {}, chat calls {chat_calls}",
        ready.as_secs_f64() * 1e3,
        caught_up.as_secs_f64() * 1e3,
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    );
    report
}

async fn run() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let (report, name) = match only.as_str() {
        "" => {
            let mut report = throughput().await;
            report["rate_limits"] = rate_limits().await;
            report["clicks"] = clicks(scale()).await;
            (report, "bench-report.json".to_string())
        }
        "throughput" => (throughput().await, "bench-report-throughput.json".into()),
        "rate_limits" => (json!({"machine": machine(), "rate_limits": rate_limits().await}), "bench-report-rate_limits.json".into()),
        "restart" => (json!({"machine": machine(), "restart": restart(scale()).await}), "bench-report-restart.json".into()),
        "clicks" => (json!({"machine": machine(), "clicks": clicks(scale()).await}), "bench-report-clicks.json".into()),
        other => panic!("BENCH_ONLY={other:?}: use throughput, rate_limits, restart or clicks"),
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(name);
    let _ = std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap());
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// Writes an identity (`dir/identity`) and a plugin configuration for
/// `slack` (`dir/bench.toml`), routing `*` to [`CHANNEL`] and each
/// `(role, channel)` of `routes`. `teleport` adds lines to `[teleport]`,
/// `sections` whole sections.
fn plugin_config(
    dir: &std::path::Path,
    sim: &TeleportSim,
    slack: &SlackSim,
    routes: &[(String, String)],
    teleport: &str,
    sections: &str,
) -> std::path::PathBuf {
    let identity = dir.join("identity");
    std::fs::write(&identity, sim.issue_identity("access-plugin", Duration::from_secs(3600)).unwrap().identity_file).unwrap();
    let mut map = format!("\"*\" = \"{CHANNEL}\"\n");
    for (role, channel) in routes {
        map.push_str(&format!("\"{role}\" = \"{channel}\"\n"));
    }
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[teleport]\naddr = \"{}\"\nconnection = \"direct\"\nidentity = \"{}\"\n{teleport}\n[slack]\ntoken = \"{TOKEN}\"\napi_url = \"{}\"\n\n[role_to_recipients]\n{map}\n[http]\nlisten = \"\"\n\n{sections}[log]\nseverity = \"info\"\n",
            sim.addr(),
            identity.display(),
            slack.base_url()
        ),
    )
    .unwrap();
    config
}

/// Arrival of the first accepted post to `channel`.
fn first_post(slack: &SlackSim, channel: &str) -> Option<Instant> {
    slack.calls_to("chat.postMessage").into_iter().find(|c| c.status == 200 && c.body["channel"] == channel).map(|c| c.received_at)
}

/// Politeness under Slack's limits: a backlog to one channel under its
/// posting limit, quiet channels' first cards during it, and card edits
/// while `chat.update` is limited.
async fn rate_limits() -> serde_json::Value {
    const BACKLOG: usize = 30;
    const QUIET: usize = 5;
    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    let quiet: Vec<(String, String)> = (0..QUIET).map(|i| (format!("quiet{i}"), format!("C0QUIET00{i}"))).collect();
    let mut cfg = SlackSimConfig::default().with_channel(SimChannel::new(CHANNEL, "bench")).with_post_limit(POST_LIMIT);
    for (_, ch) in &quiet {
        cfg = cfg.with_channel(SimChannel::new(ch.clone(), ch.to_lowercase()));
    }
    let slack = SlackSim::start(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let config = plugin_config(dir.path(), &sim, &slack, &quiet, "", "");
    let mut plugin = start_plugin(config.to_str().unwrap());

    // 30 cards to one channel at once, against one post a second (bursts of 3).
    let t0 = Instant::now();
    for i in 0..BACKLOG {
        sim.request(&format!("backlog{i}@example.com"), &["editor"], "backlog");
    }
    // A quiet channel's first card every few seconds while the backlog drains.
    let mut quiet_latency = Vec::new();
    for (role, channel) in &quiet {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let id = sim.request(&format!("{role}@example.com"), &[role.as_str()], "quiet").id().to_string();
        assert!(wait(Duration::from_secs(30), || first_post(&slack, channel).is_some()).await, "quiet card posted");
        quiet_latency.push(first_post(&slack, channel).unwrap() - sim.emitted_at(&id).unwrap());
    }
    let drained = wait(Duration::from_secs(180), || {
        slack.messages_in(CHANNEL).iter().filter(|m| m.thread_ts.is_none()).count() >= BACKLOG
    })
    .await;
    assert!(drained, "backlog posted");
    let drain = t0.elapsed();
    let posts = slack.calls_to("chat.postMessage");
    let busy = |c: &&teleport_plugin_sim::chat::CallRecord| c.body["channel"] == CHANNEL;
    let refused = posts.iter().filter(busy).filter(|c| c.status == 429).count();
    let ignored: Vec<_> = slack.calls_inside_windows().into_iter().filter(|c| c.lag() > Duration::from_millis(150)).collect();
    let quiet_refused = posts.iter().filter(|c| c.body["channel"] != CHANNEL && c.status == 429).count();
    quiet_latency.sort();
    println!(
        "backlog of {BACKLOG} to one channel under 1 post/s: drained in {:.1} s, {refused} 429 answers ({:.2} per post), {} calls inside announced windows; quiet channels' first card: max {:.0} ms (n={QUIET}, {quiet_refused} refused)",
        drain.as_secs_f64(),
        refused as f64 / BACKLOG as f64,
        ignored.len(),
        quiet_latency.last().unwrap().as_secs_f64() * 1e3
    );
    let _ = plugin.child.kill();
    let _ = plugin.child.wait();

    // Card edits while chat.update is limited (one per 2 s): each card gets
    // five reviews and the approval within about a second.
    const CARDS: usize = 10;
    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    let slack = SlackSim::start(
        SlackSimConfig::default()
            .with_channel(SimChannel::new(CHANNEL, "bench"))
            .with_rate_limit("chat.update", RateWindow::new(1, Duration::from_secs(2))),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = plugin_config(dir.path(), &sim, &slack, &[], "", "");
    let mut plugin = start_plugin(config.to_str().unwrap());
    let ids: Vec<String> = (0..CARDS).map(|i| sim.request(&format!("coalesce{i}@example.com"), &["editor"], "coalesce").id().to_string()).collect();
    assert!(wait(Duration::from_secs(30), || slack.messages_in(CHANNEL).len() >= CARDS).await, "cards posted");
    let t0 = Instant::now();
    for k in 0..5 {
        for id in &ids {
            sim.review(id, &format!("reviewer{k}"), true, "lgtm");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        sim.approve(id, "ship it");
    }
    let approved = |slack: &SlackSim| {
        slack.messages_in(CHANNEL).iter().filter(|m| m.thread_ts.is_none() && m.text.as_deref().is_some_and(|t| t.contains("APPROVED"))).count()
    };
    assert!(wait(Duration::from_secs(120), || approved(&slack) >= CARDS).await, "every card shows the approval");
    let settled = t0.elapsed();
    // Past the longest retry, so late stale edits would be counted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let updates = slack.calls_to("chat.update");
    let accepted = updates.iter().filter(|c| c.status == 200).count();
    println!(
        "coalescing: {CARDS} cards, 5 reviews + approval each within ~1 s, chat.update limited to 1 per 2 s: {:.2} chat.update calls per card ({:.2} accepted), every card approved after {:.1} s",
        updates.len() as f64 / CARDS as f64,
        accepted as f64 / CARDS as f64,
        settled.as_secs_f64()
    );
    let _ = plugin.child.kill();
    let _ = plugin.child.wait();

    json!({
        "backlog": {
            "posts": BACKLOG, "limit": "1 post/s per channel, bursts of 3",
            "drain_s": drain.as_secs_f64(),
            "refused_429": refused, "refused_per_post": refused as f64 / BACKLOG as f64,
            "calls_inside_announced_windows": ignored.len(),
        },
        "quiet_first_card": {"n": QUIET, "refused_429": quiet_refused, "latency": summary(quiet_latency)},
        "coalescing": {
            "cards": CARDS, "events_per_card": 6, "limit": "chat.update 1 per 2 s",
            "update_calls_per_card": updates.len() as f64 / CARDS as f64,
            "accepted_updates_per_card": accepted as f64 / CARDS as f64,
            "settled_s": settled.as_secs_f64(),
        },
    })
}

/// Review from Slack over Socket Mode: idle memory with the socket up, and
/// click → review submitted → answer shown to the clicker, one click at a
/// time (each on a fresh request's card, by the same reviewer).
async fn clicks(s: f64) -> serde_json::Value {
    const BOB: &str = "U0BENCHBOB";
    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    sim.set_submit_for_users("plugin-review", &["*"]);
    sim.put_user("access-plugin", &["plugin-review"], &[]);
    sim.allow_review("reviewer", &["editor"]);
    sim.put_user("bob", &["reviewer"], &[("slack_user_id", &[BOB])]);
    let slack = SlackSim::start(
        SlackSimConfig::default()
            .with_user(SimUser::new(BOB, "bob", "bob@example.com"))
            .with_channel(SimChannel::new(CHANNEL, "bench")),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let review = "[review]\nenabled = true\napp_token = \"xapp-sim-app-token\"\n";
    let config = plugin_config(dir.path(), &sim, &slack, &[], "", review);
    let plugin = start_plugin(config.to_str().unwrap());
    let pid = plugin.child.id();
    assert!(poll(Duration::from_secs(10), || slack.socket_connected()).await, "Socket Mode connects");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mib(pid);
    println!("RSS idle with Socket Mode connected: {rss_idle:.1} MiB");
    if std::env::var_os("BENCH_SMAPS").is_some() {
        print_rss_by_mapping(pid);
    }
    let n = ((200.0 * s) as usize).max(30);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let r = sim.request("alice", &["editor"], "bench");
        let mut ts = None;
        assert!(
            poll(Duration::from_secs(10), || {
                ts = slack.messages_in(CHANNEL).into_iter().find(|m| {
                    m.thread_ts.is_none() && m.metadata.as_ref().is_some_and(|md| md["event_payload"]["request_id"] == r.id())
                }).map(|m| m.ts);
                ts.is_some()
            })
            .await
        );
        let t0 = Instant::now();
        slack.click(BOB, CHANNEL, &ts.unwrap(), "approve_button").await.unwrap();
        slack.wait_for(|sl| sl.ephemerals(BOB).len() > i, Duration::from_secs(10)).await.expect("answered");
        lat.push(t0.elapsed());
        assert!(sim.get_request(r.id()).unwrap().spec.unwrap().reviews.len() == 1, "reviewed");
    }
    let lat = summary(lat);
    println!("click → review → answer over Socket Mode ({n} clicks): {lat}");
    stop_plugin(plugin);
    json!({"clicks": n, "click_to_answer_ms": lat, "rss_idle_socket_mode_mib": rss_idle})
}

/// Latency, burst, memory, start and rotation figures.
async fn throughput() -> serde_json::Value {
    let s = scale();
    let steady_secs = (10.0 * s).max(1.0);
    let burst = ((10_000.0 * s) as usize).max(100);
    println!("machine: {}", machine());

    let floor = floor((500.0 * s).max(50.0) as usize).await;
    println!("floor (gRPC event + HTTP POST): {floor}");

    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    let slack = SlackSim::start(SlackSimConfig::default().with_channel(SimChannel::new(CHANNEL, "bench"))).await;
    let dir = tempfile::tempdir().unwrap();
    let config = plugin_config(dir.path(), &sim, &slack, &[], "refresh_identity = true\n", "[plugin]\nconcurrency = 64\n");
    let identity = dir.path().join("identity");

    let posts = post_counter(&slack);
    let mut plugin = start_plugin(config.to_str().unwrap());
    let pid = plugin.child.id();
    println!("start → ready: {:.1} ms", plugin.ready_after.as_secs_f64() * 1e3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mib(pid);
    println!("RSS idle: {rss_idle:.1} MiB");
    if std::env::var_os("BENCH_SMAPS").is_some() {
        print_rss_by_mapping(pid);
    }

    // Steady 200 requests/s.
    let n = (200.0 * steady_secs) as usize;
    let mut ids = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_micros(5_000 * i as u64);
        tokio::time::sleep_until(due.into()).await;
        ids.push(sim.request(&format!("steady{i}@example.com"), &["editor"], "steady").id().to_string());
    }
    assert!(wait_count(&posts, n, Duration::from_secs(120)).await, "steady: all posted");
    let c = cards(&slack);
    let overhead: Vec<Duration> = ids.iter().map(|id| c[id].1 - sim.emitted_at(id).unwrap()).collect();
    let steady = summary(overhead);
    println!("overhead at 200/s: {steady}");

    // Burst.
    let cpu0 = cpu_time(pid);
    let t0 = Instant::now();
    let burst_ids: Vec<String> = (0..burst).map(|i| sim.request(&format!("burst{i}@example.com"), &["editor"], "burst").id().to_string()).collect();
    let created = t0.elapsed();
    let drained = wait_count(&posts, n + burst, Duration::from_secs(600)).await;
    let drain = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = cpu_time(pid) - cpu0;
    let c = cards(&slack);
    let posted = burst_ids.iter().filter(|id| c.contains_key(*id)).count();
    let duplicated = burst_ids.iter().filter(|id| c.get(*id).is_some_and(|(n, _)| *n > 1)).count();
    let rss_tracked = rss_mib(pid);
    println!(
        "burst of {burst}: created in {:.0} ms, drained in {:.0} ms, posted {posted} (duplicated {duplicated}), CPU {:.0} µs per notification, RSS {rss_tracked:.1} MiB",
        created.as_secs_f64() * 1e3,
        drain.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e6 / burst as f64
    );
    assert!(drained && posted == burst && duplicated == 0, "burst delivered exactly once");

    // Identity rotation → new stream ready.
    let next = sim.issue_identity("access-plugin", Duration::from_secs(7200)).unwrap().identity_file;
    let next_fp = parse_identity_file(next.as_bytes()).unwrap().fingerprint;
    let t0 = Instant::now();
    std::fs::write(&identity, next).unwrap();
    assert!(wait(Duration::from_secs(30), || sim.watch_inits().iter().any(|(_, fp)| *fp == next_fp)).await, "rotated stream");
    let rotation = sim.watch_inits().iter().find(|(_, fp)| *fp == next_fp).unwrap().0 - t0;
    println!("rotation → new stream ready: {:.1} ms", rotation.as_secs_f64() * 1e3);

    let _ = plugin.child.kill();
    let _ = plugin.child.wait();

    let restart = restart(s).await;

    let p99 = steady["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let floor_p99 = floor["p99_ms"].as_f64().unwrap_or(f64::NAN);
    let report = json!({
        "machine": machine(),
        "scale": s,
        "floor": floor,
        "overhead_200_per_s": steady,
        "overhead_p99_over_floor_p99": p99 / floor_p99,
        "burst": {
            "requests": burst, "posted": posted, "duplicated": duplicated,
            "drain_ms": drain.as_secs_f64() * 1e3,
            "cpu_us_per_notification": cpu.as_secs_f64() * 1e6 / burst as f64,
        },
        "rss_mib": {"idle": rss_idle, "tracked": rss_tracked},
        "start_to_ready_ms": plugin.ready_after.as_secs_f64() * 1e3,
        "rotation_to_ready_ms": rotation.as_secs_f64() * 1e3,
        "restart": restart,
    });
    report
}
