//! Drives the chat simulators over HTTP the way the clients do.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use teleport_plugin_sim::chat::discord::snowflake_at;
use teleport_plugin_sim::chat::{
    ChatSim, DiscordSim, DiscordSimConfig, MattermostSim, MattermostSimConfig, RateWindow,
    STATUS_CLIENT_CLOSED, SimChannel, SimUser, SlackSim, SlackSimConfig,
};

const WAIT: Duration = Duration::from_secs(5);

fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.expect("request reaches the simulator");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}"))
}

// ---------------------------------------------------------------- Slack

const SLACK_TOKEN: &str = "xoxb-test";

async fn slack() -> SlackSim {
    SlackSim::start(SlackSimConfig {
        tokens: vec![SLACK_TOKEN.into()],
        ..SlackSimConfig::default()
            .with_user(SimUser::new("U100", "alice", "alice@example.com"))
            .with_user(SimUser::new("U200", "bob", "bob@example.com"))
            .with_channel(SimChannel::new("C100", "access-requests"))
            .with_channel(SimChannel::new("C200", "private-ops").without_bot())
    })
    .await
}

async fn slack_call(c: &Client, sim: &SlackSim, method: &str, body: Value) -> Reply {
    send(
        c.post(format!("{}{method}", sim.base_url()))
            .bearer_auth(SLACK_TOKEN)
            .json(&body),
    )
    .await
}

fn section(len: usize) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": "a".repeat(len)}})
}

#[tokio::test]
async fn slack_auth() {
    let sim = slack().await;
    let c = client();
    let url = format!("{}auth.test", sim.base_url());

    let r = send(c.post(&url)).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (200, Some("not_authed"))
    );
    let r = send(c.post(&url).bearer_auth("xoxb-wrong")).await;
    assert_eq!(r.body["error"], "invalid_auth");

    let r = send(c.post(&url).bearer_auth(SLACK_TOKEN)).await;
    assert_eq!(r.body["ok"], true);
    assert_eq!(r.body["user_id"], "U0SIMBOT01");
    assert_eq!(r.body["bot_id"], "B0SIMBOT01");
    assert_eq!(r.body["team_id"], "T0SIMTEAM1");
    assert_eq!(r.body["url"], "https://sim-workspace.slack.com/");

    sim.revoke_token(SLACK_TOKEN);
    let r = send(c.post(&url).bearer_auth(SLACK_TOKEN)).await;
    assert_eq!(r.body["error"], "token_revoked");
    sim.add_token(SLACK_TOKEN);
    let r = send(c.post(&url).bearer_auth(SLACK_TOKEN)).await;
    assert_eq!(r.body["ok"], true);

    let r = send(
        c.post(format!("{}chat.nope", sim.base_url()))
            .bearer_auth(SLACK_TOKEN),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("unknown_method"))
    );

    // The token never reaches the call log.
    assert!(
        sim.calls()
            .iter()
            .all(|c| !c.body.to_string().contains(SLACK_TOKEN))
    );
}

#[tokio::test]
async fn slack_post_message_targets_and_limits() {
    let sim = slack().await;
    let c = client();

    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "#access-requests", "text": "hi"}),
    )
    .await;
    assert_eq!(r.body["ok"], true, "{}", r.text);
    assert_eq!(r.body["channel"], "C100");
    assert_eq!(r.body["message"]["text"], "hi");
    assert_eq!(r.body["message"]["bot_id"], "B0SIMBOT01");
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "access-requests", "blocks": [section(10)]}),
    )
    .await;
    assert_eq!(r.body["channel"], "C100");

    // A user id posts into that user's DM, the same one conversations.open returns.
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "U100", "text": "dm"}),
    )
    .await;
    let dm = r.body["channel"].as_str().unwrap().to_owned();
    assert!(dm.starts_with('D'), "{dm}");
    let r = slack_call(&c, &sim, "conversations.open", json!({"users": "U100"})).await;
    assert_eq!(r.body["channel"]["id"], dm.as_str());
    assert_eq!(sim.dm_channel_of("U100").as_deref(), Some(dm.as_str()));
    assert_eq!(sim.messages_in("U100").len(), 1);

    let msgs = sim.messages_in("C100");
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].has_text_fallback());
    assert!(
        !msgs[1].has_text_fallback(),
        "blocks-only message has no fallback"
    );

    let cases = [
        (json!({"channel": "C999", "text": "x"}), "channel_not_found"),
        (
            json!({"channel": "#nowhere", "text": "x"}),
            "channel_not_found",
        ),
        (json!({"channel": "C200", "text": "x"}), "not_in_channel"),
        (json!({"channel": "C100"}), "no_text"),
        (
            json!({"channel": "C100", "text": "x".repeat(40_001)}),
            "msg_too_long",
        ),
        (
            json!({"channel": "C100", "text": "x", "thread_ts": "1.000001"}),
            "thread_not_found",
        ),
        (
            json!({"channel": "C100", "text": "x", "metadata": {"event_type": "x"}}),
            "invalid_metadata_format",
        ),
    ];
    for (body, want) in cases {
        let r = slack_call(&c, &sim, "chat.postMessage", body).await;
        assert_eq!(r.body["error"], want, "{}", r.text);
    }
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "x".repeat(40_000)}),
    )
    .await;
    assert_eq!(r.body["ok"], true);

    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "f", "blocks": [section(3001)]}),
    )
    .await;
    assert_eq!(r.body["error"], "invalid_blocks");
    assert!(
        r.body["errors"]
            .to_string()
            .contains("must be less than 3001 characters"),
        "{}",
        r.text
    );
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "f", "blocks": [section(3000)]}),
    )
    .await;
    assert_eq!(r.body["ok"], true);
    let ctx =
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "c".repeat(3001)}]});
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "f", "blocks": [ctx]}),
    )
    .await;
    assert_eq!(r.body["error"], "invalid_blocks");
    let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "f", "blocks": many}),
    )
    .await;
    assert_eq!(r.body["error"], "invalid_blocks");

    sim.set_bot_member("C200", true);
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C200", "text": "x"}),
    )
    .await;
    assert_eq!(r.body["ok"], true);
}

#[tokio::test]
async fn slack_form_and_query_arguments() {
    let sim = slack().await;
    let c = client();
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("channel", "C100")
        .append_pair("text", "fallback")
        .append_pair("blocks", &json!([section(5)]).to_string())
        .finish();
    let r = send(
        c.post(format!("{}chat.postMessage", sim.base_url()))
            .bearer_auth(SLACK_TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form),
    )
    .await;
    assert_eq!(r.body["ok"], true, "{}", r.text);
    assert_eq!(sim.messages_in("C100")[0].blocks, Some(json!([section(5)])));

    let r = send(
        c.get(format!(
            "{}users.lookupByEmail?email=ALICE%40example.com",
            sim.base_url()
        ))
        .bearer_auth(SLACK_TOKEN),
    )
    .await;
    assert_eq!(r.body["user"]["id"], "U100");
    assert_eq!(r.body["user"]["profile"]["email"], "alice@example.com");
    let r = send(
        c.get(format!(
            "{}users.lookupByEmail?email=nobody%40example.com",
            sim.base_url()
        ))
        .bearer_auth(SLACK_TOKEN),
    )
    .await;
    assert_eq!(r.body["error"], "users_not_found");

    // Token as a POST parameter, as Slack also allows.
    let r = send(
        c.post(format!("{}auth.test", sim.base_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={SLACK_TOKEN}")),
    )
    .await;
    assert_eq!(r.body["ok"], true);
    assert_eq!(sim.calls().last().unwrap().body["token"], "[redacted]");
}

#[tokio::test]
async fn slack_update_reactions_history_and_replies() {
    let sim = slack().await;
    let c = client();
    let md = json!({"event_type": "access_request", "event_payload": {"request_id": "r1"}});
    let parent = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "v1", "metadata": md}),
    )
    .await;
    let ts = parent.body["ts"].as_str().unwrap().to_owned();
    let other = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "other"}),
    )
    .await;
    let other_ts = other.body["ts"].as_str().unwrap().to_owned();
    assert!(other_ts > ts);

    let r = slack_call(
        &c,
        &sim,
        "chat.update",
        json!({"channel": "C100", "ts": ts, "text": "v2", "blocks": [section(3)]}),
    )
    .await;
    assert_eq!(
        (r.body["ok"].as_bool(), r.body["ts"].as_str()),
        (Some(true), Some(ts.as_str()))
    );
    let r = slack_call(
        &c,
        &sim,
        "chat.update",
        json!({"channel": "C100", "ts": ts, "text": "v3"}),
    )
    .await;
    assert_eq!(r.body["ok"], true);
    let r = slack_call(
        &c,
        &sim,
        "chat.update",
        json!({"channel": "C100", "ts": "1.000001", "text": "x"}),
    )
    .await;
    assert_eq!(r.body["error"], "message_not_found");
    let r = slack_call(
        &c,
        &sim,
        "chat.update",
        json!({"channel": "C100", "ts": ts, "blocks": [section(3001)]}),
    )
    .await;
    assert_eq!(r.body["error"], "invalid_blocks");
    let m = sim.message("C100", &ts).unwrap();
    assert_eq!(m.text.as_deref(), Some("v3"));
    assert_eq!(
        m.blocks,
        Some(json!([section(3)])),
        "omitted blocks are kept"
    );
    let old: Vec<_> = m.history.iter().map(|h| h.text.clone().unwrap()).collect();
    assert_eq!(old, ["v1", "v2"]);

    let r = slack_call(
        &c,
        &sim,
        "reactions.add",
        json!({"channel": "C100", "timestamp": ts, "name": "white_check_mark"}),
    )
    .await;
    assert_eq!(r.body["ok"], true);
    let r = slack_call(
        &c,
        &sim,
        "reactions.add",
        json!({"channel": "C100", "timestamp": ts, "name": "white_check_mark"}),
    )
    .await;
    assert_eq!(r.body["error"], "already_reacted");
    let r = slack_call(
        &c,
        &sim,
        "reactions.add",
        json!({"channel": "C100", "timestamp": "1.1", "name": "x"}),
    )
    .await;
    assert_eq!(r.body["error"], "message_not_found");
    assert_eq!(
        sim.message("C100", &ts).unwrap().reactions["white_check_mark"],
        ["U0SIMBOT01"]
    );

    let reply_md = json!({"event_type": "access_request_reply", "event_payload": {"n": 1}});
    let r = slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "r1", "thread_ts": ts, "metadata": reply_md}),
    )
    .await;
    assert_eq!(r.body["message"]["thread_ts"], ts.as_str());
    let reply_ts = r.body["ts"].as_str().unwrap().to_owned();
    // Replying to a reply lands in the same thread.
    slack_call(
        &c,
        &sim,
        "chat.postMessage",
        json!({"channel": "C100", "text": "r2", "thread_ts": reply_ts}),
    )
    .await;
    assert_eq!(sim.thread_replies("C100", &ts).len(), 2);

    // History: newest first, thread replies excluded, metadata only on request.
    let r = slack_call(
        &c,
        &sim,
        "conversations.history",
        json!({"channel": "C100"}),
    )
    .await;
    let msgs = r.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["ts"], other_ts.as_str());
    assert_eq!(msgs[1]["reply_count"], 2);
    assert!(msgs[1].get("metadata").is_none());
    assert_eq!(msgs[1]["edited"]["user"], "U0SIMBOT01");
    let r = slack_call(
        &c,
        &sim,
        "conversations.history",
        json!({"channel": "C100", "include_all_metadata": true, "oldest": "0", "limit": 1}),
    )
    .await;
    assert_eq!(r.body["has_more"], true);
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 1);
    let cursor = r.body["response_metadata"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = slack_call(
        &c,
        &sim,
        "conversations.history",
        json!({"channel": "C100", "include_all_metadata": true, "cursor": cursor}),
    )
    .await;
    assert_eq!(r.body["messages"][0]["metadata"], md);
    assert_eq!(r.body["has_more"], false);
    let r = slack_call(
        &c,
        &sim,
        "conversations.history",
        json!({"channel": "C100", "oldest": ts}),
    )
    .await;
    assert_eq!(
        r.body["messages"].as_array().unwrap().len(),
        1,
        "oldest is exclusive"
    );

    // Form-encoded GET, as most clients call the read methods.
    let r = send(
        c.get(format!(
            "{}conversations.replies?channel=C100&ts={reply_ts}&include_all_metadata=true",
            sim.base_url()
        ))
        .bearer_auth(SLACK_TOKEN),
    )
    .await;
    let thread = r.body["messages"].as_array().unwrap();
    let texts: Vec<_> = thread.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["v3", "r1", "r2"]);
    assert_eq!(thread[1]["metadata"], reply_md);
    let r = slack_call(
        &c,
        &sim,
        "conversations.replies",
        json!({"channel": "C100", "ts": "1.000002"}),
    )
    .await;
    assert_eq!(r.body["error"], "thread_not_found");
    let r = slack_call(
        &c,
        &sim,
        "conversations.history",
        json!({"channel": "C200"}),
    )
    .await;
    assert_eq!(r.body["error"], "not_in_channel");
}

#[tokio::test]
async fn slack_rate_limits_and_recovery() {
    let sim = SlackSim::start(SlackSimConfig {
        tokens: vec![SLACK_TOKEN.into()],
        ..SlackSimConfig::default()
            .with_channel(SimChannel::new("C100", "general"))
            .with_rate_limit(
                "chat.postMessage",
                RateWindow::new(2, Duration::from_millis(300)),
            )
    })
    .await;
    let c = client();
    let post = json!({"channel": "C100", "text": "x"});
    for _ in 0..2 {
        assert_eq!(
            slack_call(&c, &sim, "chat.postMessage", post.clone())
                .await
                .body["ok"],
            true
        );
    }
    let r = slack_call(&c, &sim, "chat.postMessage", post.clone()).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, json!({"ok": false, "error": "ratelimited"}));
    assert_eq!(header(&r, "retry-after"), "1");
    // Other methods have their own budget.
    assert_eq!(
        slack_call(&c, &sim, "auth.test", json!({})).await.body["ok"],
        true
    );
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(
        slack_call(&c, &sim, "chat.postMessage", post.clone())
            .await
            .body["ok"],
        true
    );
    assert_eq!(sim.messages_in("C100").len(), 3);

    sim.set_rate_limit("chat.postMessage", None);
    sim.rate_limit_next_on("chat.postMessage", 2, Duration::from_secs(7));
    let r = slack_call(&c, &sim, "chat.postMessage", post.clone()).await;
    assert_eq!((r.status, header(&r, "retry-after")), (429, "7"));
    assert_eq!(
        slack_call(&c, &sim, "auth.test", json!({})).await.status,
        200
    );
    assert_eq!(
        slack_call(&c, &sim, "chat.postMessage", post.clone())
            .await
            .status,
        429
    );
    assert_eq!(
        slack_call(&c, &sim, "chat.postMessage", post).await.status,
        200
    );
    let limited = sim
        .calls_to("chat.postMessage")
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert_eq!(limited, 3);
}

#[tokio::test]
async fn slack_faults_delays_and_recording() {
    let sim = slack().await;
    let c = client();
    let post = json!({"channel": "C100", "text": "x"});

    sim.fail_next(1, 503);
    let r = slack_call(&c, &sim, "chat.postMessage", post.clone()).await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("service_unavailable"))
    );
    sim.fail_next(1, 502);
    let r = slack_call(&c, &sim, "chat.postMessage", post.clone()).await;
    assert_eq!(r.status, 502);
    assert!(r.text.contains("502 Bad Gateway"));
    assert!(
        sim.messages_in("C100").is_empty(),
        "failed calls change nothing"
    );
    assert_eq!(
        slack_call(&c, &sim, "chat.postMessage", post.clone())
            .await
            .status,
        200
    );

    // A slow response: the service time covers the delay.
    sim.set_response_delay(Duration::from_millis(120));
    let started = Instant::now();
    slack_call(&c, &sim, "auth.test", json!({})).await;
    assert!(started.elapsed() >= Duration::from_millis(120));
    let last = sim.calls().pop().unwrap();
    assert!(
        last.service_time >= Duration::from_millis(120),
        "{:?}",
        last.service_time
    );

    // A client that times out during a response delay: the post still happened.
    let quick = Client::builder()
        .timeout(Duration::from_millis(40))
        .build()
        .unwrap();
    let res = quick
        .post(format!("{}chat.postMessage", sim.base_url()))
        .bearer_auth(SLACK_TOKEN)
        .json(&post)
        .send()
        .await;
    assert!(res.is_err_and(|e| e.is_timeout()));
    sim.wait_until(|s| s.messages_in("C100").len() == 2, WAIT)
        .await
        .unwrap();
    // The call is logged as abandoned by the client.
    sim.wait_for_calls(|c| c.status == STATUS_CLIENT_CLOSED, 1, WAIT)
        .await
        .unwrap();

    // A client that times out while the request is held before handling: nothing happens.
    sim.clear_faults();
    sim.set_delay(Duration::from_millis(400));
    let res = quick
        .post(format!("{}chat.postMessage", sim.base_url()))
        .bearer_auth(SLACK_TOKEN)
        .json(&post)
        .send()
        .await;
    assert!(res.is_err_and(|e| e.is_timeout()));
    let closed = sim
        .wait_for_calls(|c| c.status == STATUS_CLIENT_CLOSED, 2, WAIT)
        .await
        .unwrap();
    assert_eq!(closed[1].endpoint, "chat.postMessage");
    assert!(closed[1].service_time < Duration::from_millis(400));
    assert_eq!(sim.messages_in("C100").len(), 2);
    sim.clear_faults();

    let calls = sim.calls();
    assert!(calls.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(
        calls
            .windows(2)
            .all(|w| w[0].received_at <= w[1].received_at)
    );
    let first = &calls[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/api/chat.postMessage")
    );
    assert_eq!(first.body, post);
    assert_eq!(first.status, 503);

    // Waiting on a call made by another task, without sleeping in a loop.
    let mut events = sim.subscribe();
    let (c2, url) = (c.clone(), format!("{}auth.test", sim.base_url()));
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _ = c2.post(url).bearer_auth(SLACK_TOKEN).send().await;
    });
    let got = sim
        .wait_for_calls(|c| c.endpoint == "auth.test", 2, WAIT)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    let ev = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.endpoint, "auth.test");
    assert!(
        sim.wait_until(|s| s.messages().len() > 10, Duration::from_millis(50))
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------- Discord

const DISCORD_TOKEN: &str = "discord-test";
const UA: &str = "DiscordBot (https://example.com, 1.0)";
const CH: &str = "1200000000000000001";
const CH2: &str = "1200000000000000002";
const LOCKED: &str = "1200000000000000003";
const USER: &str = "1300000000000000001";

async fn discord_with(config: DiscordSimConfig) -> DiscordSim {
    DiscordSim::start(DiscordSimConfig {
        tokens: vec![DISCORD_TOKEN.into()],
        ..config
            .with_user(SimUser::new(USER, "alice", "alice@example.com"))
            .with_channel(SimChannel::new(CH, "access-requests"))
            .with_channel(SimChannel::new(CH2, "other"))
            .with_channel(SimChannel::new(LOCKED, "locked").without_bot())
    })
    .await
}

async fn dc(
    c: &Client,
    sim: &DiscordSim,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut req = c
        .request(method, format!("{}{path}", sim.base_url()))
        .header("authorization", format!("Bot {DISCORD_TOKEN}"))
        .header("user-agent", UA);
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

async fn dpost(c: &Client, sim: &DiscordSim, channel: &str, body: Value) -> Reply {
    dc(
        c,
        sim,
        Method::POST,
        &format!("/channels/{channel}/messages"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn discord_auth_and_user_agent() {
    let sim = discord_with(DiscordSimConfig::default()).await;
    let c = client();
    let url = format!("{}/users/@me", sim.base_url());
    let r = send(
        c.get(&url)
            .header("authorization", format!("Bot {DISCORD_TOKEN}"))
            .header("user-agent", "curl/8"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body["message"].as_str().unwrap().contains("DiscordBot"));
    let r = send(c.get(&url).header("user-agent", UA)).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (401, json!({"message": "401: Unauthorized", "code": 0}))
    );
    let r = send(
        c.get(&url)
            .header("user-agent", UA)
            .header("authorization", format!("Bearer {DISCORD_TOKEN}")),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = dc(&c, &sim, Method::GET, "/users/@me", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["bot"], true);
    assert_eq!(r.body["id"], sim.bot_id().as_str());
    sim.revoke_token(DISCORD_TOKEN);
    assert_eq!(
        dc(&c, &sim, Method::GET, "/users/@me", None).await.status,
        401
    );
}

#[tokio::test]
async fn discord_message_limits() {
    // Many posts in a row to one channel: about validation, not pacing.
    let sim = discord_with(DiscordSimConfig::default().without_rate_limits()).await;
    let c = client();
    let r = dpost(&c, &sim, CH, json!({"content": "hello"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["channel_id"], CH);
    assert_eq!(r.body["author"]["bot"], true);
    assert!(r.body["id"].as_str().unwrap().parse::<u64>().is_ok());
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-reset-after",
        "x-ratelimit-bucket",
    ] {
        header(&r, h);
    }

    let r = dpost(&c, &sim, CH, json!({"content": "x".repeat(2000)})).await;
    assert_eq!(r.status, 200);
    let r = dpost(&c, &sim, CH, json!({"content": "x".repeat(2001)})).await;
    assert_eq!((r.status, r.body["code"].as_u64()), (400, Some(50035)));
    assert_eq!(r.body["message"], "Invalid Form Body");
    assert_eq!(
        r.body["errors"]["content"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );

    let embed = |title: usize, desc: usize, fields: usize, value: usize| {
        let fields: Vec<Value> = (0..fields)
            .map(|_| json!({"name": "n", "value": "v".repeat(value)}))
            .collect();
        json!({"title": "t".repeat(title), "description": "d".repeat(desc), "fields": fields})
    };
    let bad = [
        (json!({"embeds": vec![embed(1, 1, 0, 1); 11]}), "embeds"),
        (json!({"embeds": [embed(257, 1, 0, 1)]}), "title"),
        (json!({"embeds": [embed(1, 4097, 0, 1)]}), "description"),
        (json!({"embeds": [embed(1, 1, 26, 1)]}), "fields"),
        (json!({"embeds": [embed(1, 1, 1, 1025)]}), "value"),
        (
            json!({"embeds": [{"fields": [{"name": "n".repeat(257), "value": "v"}]}]}),
            "name",
        ),
        (
            json!({"embeds": [embed(1, 4000, 0, 1), embed(1, 2000, 0, 1)]}),
            "MAX_EMBED_SIZE_EXCEEDED",
        ),
        (json!({"content": "x", "nonce": "n".repeat(26)}), "nonce"),
    ];
    for (body, needle) in bad {
        let r = dpost(&c, &sim, CH, body).await;
        assert_eq!(
            (r.status, r.body["code"].as_u64()),
            (400, Some(50035)),
            "{needle}: {}",
            r.text
        );
        assert!(
            r.body["errors"].to_string().contains(needle),
            "{needle}: {}",
            r.text
        );
    }
    let ok = dpost(&c, &sim, CH, json!({"embeds": [embed(256, 4096, 25, 10)]})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let r = dpost(&c, &sim, CH, json!({})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (
            400,
            json!({"message": "Cannot send an empty message", "code": 50006})
        )
    );
    let r = dpost(&c, &sim, CH, json!({"content": "", "embeds": []})).await;
    assert_eq!(r.body["code"], 50006);
    let r = dpost(&c, &sim, "1299999999999999999", json!({"content": "x"})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (404, json!({"message": "Unknown Channel", "code": 10003}))
    );
    let r = dpost(&c, &sim, LOCKED, json!({"content": "x"})).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (403, json!({"message": "Missing Access", "code": 50001}))
    );
    sim.set_bot_member(LOCKED, true);
    assert_eq!(
        dpost(&c, &sim, LOCKED, json!({"content": "x"}))
            .await
            .status,
        200
    );
    assert_eq!(sim.messages_in(CH).len(), 3);
}

#[tokio::test]
async fn discord_nonce_edit_history_and_dm() {
    let sim = discord_with(DiscordSimConfig::default()).await;
    let c = client();
    let body = json!({"content": "req", "nonce": "req-1", "enforce_nonce": true});
    let a = dpost(&c, &sim, CH, body.clone()).await;
    let b = dpost(&c, &sim, CH, body).await;
    assert_eq!(a.body["id"], b.body["id"]);
    assert_eq!(a.body["nonce"], "req-1");
    assert_eq!(sim.messages_in(CH).len(), 1);
    let other = dpost(
        &c,
        &sim,
        CH,
        json!({"content": "req", "nonce": "req-2", "enforce_nonce": true}),
    )
    .await;
    assert_ne!(other.body["id"], a.body["id"]);
    // Without enforce_nonce the nonce does not deduplicate.
    dpost(&c, &sim, CH, json!({"content": "req", "nonce": "req-1"})).await;
    assert_eq!(sim.messages_in(CH).len(), 3);

    let id = a.body["id"].as_str().unwrap().to_owned();
    let path = format!("/channels/{CH}/messages/{id}");
    let r = dc(
        &c,
        &sim,
        Method::PATCH,
        &path,
        Some(json!({"content": "approved", "embeds": [{"title": "ok"}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["content"], "approved");
    assert!(r.body["edited_timestamp"].is_string());
    let r = dc(
        &c,
        &sim,
        Method::PATCH,
        &path,
        Some(json!({"content": "x".repeat(2001)})),
    )
    .await;
    assert_eq!(r.body["code"], 50035);
    let r = dc(
        &c,
        &sim,
        Method::PATCH,
        &path,
        Some(json!({"content": null, "embeds": null})),
    )
    .await;
    assert_eq!(r.body["code"], 50006);
    let r = dc(
        &c,
        &sim,
        Method::PATCH,
        &format!("/channels/{CH}/messages/1"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!((r.status, r.body["code"].as_u64()), (404, Some(10008)));
    let m = sim.message(&id).unwrap();
    assert_eq!(m.content, "approved");
    assert_eq!(m.embeds[0]["title"], "ok");
    assert_eq!(m.history.len(), 1);
    assert_eq!(m.history[0].content, "req");

    let r = dc(
        &c,
        &sim,
        Method::POST,
        "/users/@me/channels",
        Some(json!({"recipient_id": USER})),
    )
    .await;
    assert_eq!((r.status, r.body["type"].as_u64()), (200, Some(1)));
    let dm = r.body["id"].as_str().unwrap().to_owned();
    let again = dc(
        &c,
        &sim,
        Method::POST,
        "/users/@me/channels",
        Some(json!({"recipient_id": USER})),
    )
    .await;
    assert_eq!(again.body["id"], dm.as_str());
    assert_eq!(sim.dm_channel_of(USER).as_deref(), Some(dm.as_str()));
    assert_eq!(
        dpost(&c, &sim, &dm, json!({"content": "hi"})).await.status,
        200
    );
    sim.set_dms_closed(USER, true);
    assert_eq!(
        dpost(&c, &sim, &dm, json!({"content": "hi"})).await.body["code"],
        50007
    );
    let r = dc(
        &c,
        &sim,
        Method::POST,
        "/users/@me/channels",
        Some(json!({"recipient_id": "1399999999999999999"})),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn discord_history_after_snowflake() {
    let sim = discord_with(DiscordSimConfig::default()).await;
    let c = client();
    dpost(&c, &sim, CH, json!({"content": "old"})).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    for text in ["m1", "m2", "m3"] {
        dpost(&c, &sim, CH, json!({"content": text})).await;
    }
    dpost(&c, &sim, CH2, json!({"content": "elsewhere"})).await;

    let after = snowflake_at(since);
    let r = dc(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{CH}/messages?after={after}&limit=100"),
        None,
    )
    .await;
    let contents: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m3", "m2", "m1"]);
    // `after` with a limit takes the messages right after the id.
    let r = dc(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{CH}/messages?after={after}&limit=2"),
        None,
    )
    .await;
    let contents: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m2", "m1"]);
    let r = dc(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{CH}/messages?limit=1"),
        None,
    )
    .await;
    assert_eq!(r.body[0]["content"], "m3");
    let r = dc(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{CH}/messages?limit=101"),
        None,
    )
    .await;
    assert_eq!((r.status, r.body["code"].as_u64()), (400, Some(50035)));
    assert!(r.body["errors"]["limit"].is_object());
    let r = dc(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{LOCKED}/messages"),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn discord_route_and_global_rate_limits() {
    let window = Duration::from_millis(300);
    let sim = discord_with(DiscordSimConfig::default().with_route_limit(
        "POST /channels/{channel_id}/messages",
        RateWindow::new(2, window),
    ))
    .await;
    let c = client();
    let first = dpost(&c, &sim, CH, json!({"content": "1"})).await;
    assert_eq!(
        (
            header(&first, "x-ratelimit-limit"),
            header(&first, "x-ratelimit-remaining")
        ),
        ("2", "1")
    );
    let reset_after: f64 = header(&first, "x-ratelimit-reset-after").parse().unwrap();
    assert!(reset_after > 0.0 && reset_after <= 0.3, "{reset_after}");
    let reset: f64 = header(&first, "x-ratelimit-reset").parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((reset - now).abs() < 2.0);
    dpost(&c, &sim, CH, json!({"content": "2"})).await;
    let r = dpost(&c, &sim, CH, json!({"content": "3"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["message"], "You are being rate limited.");
    assert_eq!(r.body["global"], false);
    let retry = r.body["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 0.3, "{retry}");
    assert!(r.headers.contains_key(RETRY_AFTER));
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    assert_eq!(
        header(&r, "x-ratelimit-bucket"),
        header(&first, "x-ratelimit-bucket")
    );
    // Buckets are per channel.
    assert_eq!(
        dpost(&c, &sim, CH2, json!({"content": "x"})).await.status,
        200
    );
    tokio::time::sleep(Duration::from_secs_f64(retry + 0.02)).await;
    assert_eq!(
        dpost(&c, &sim, CH, json!({"content": "4"})).await.status,
        200
    );
    let kept: Vec<_> = sim.messages_in(CH).into_iter().map(|m| m.content).collect();
    assert_eq!(kept, ["1", "2", "4"]);

    sim.set_global_limit(Some(RateWindow::new(2, window)));
    assert_eq!(
        dc(&c, &sim, Method::GET, "/users/@me", None).await.status,
        200
    );
    assert_eq!(
        dc(&c, &sim, Method::GET, "/users/@me", None).await.status,
        200
    );
    let r = dc(&c, &sim, Method::GET, "/users/@me", None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body["global"], true);
    assert_eq!(header(&r, "x-ratelimit-global"), "true");
    assert_eq!(header(&r, "x-ratelimit-scope"), "global");
    sim.set_global_limit(None);

    sim.rate_limit_next(1, Duration::from_millis(1500));
    let r = dpost(&c, &sim, CH, json!({"content": "x"})).await;
    assert_eq!((r.status, header(&r, "retry-after")), (429, "2"));
    assert_eq!(r.body["retry_after"], 1.5);
}

// ---------------------------------------------------------------- Mattermost

const MM_TOKEN: &str = "mm-test";
const MM_USER: &str = "u1aaaaaaaaaaaaaaaaaaaaaaaa";
const MM_CH: &str = "c1aaaaaaaaaaaaaaaaaaaaaaaa";
const MM_LOCKED: &str = "c2aaaaaaaaaaaaaaaaaaaaaaaa";

async fn mattermost_with(config: MattermostSimConfig) -> MattermostSim {
    MattermostSim::start(MattermostSimConfig {
        tokens: vec![MM_TOKEN.into()],
        ..config
            .with_user(SimUser::new(MM_USER, "alice", "alice@example.com"))
            .with_channel(SimChannel::new(MM_CH, "access-requests").in_team("eng"))
            .with_channel(
                SimChannel::new(MM_LOCKED, "locked")
                    .in_team("eng")
                    .without_bot(),
            )
    })
    .await
}

async fn mm(
    c: &Client,
    sim: &MattermostSim,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let mut req = c
        .request(method, format!("{}/api/v4{path}", sim.base_url()))
        .header("authorization", format!("Bearer {MM_TOKEN}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    send(req).await
}

#[tokio::test]
async fn mattermost_auth_lookups_and_direct_channels() {
    let sim = mattermost_with(MattermostSimConfig::default()).await;
    let c = client();
    let url = format!("{}/api/v4/users/me", sim.base_url());
    let r = send(c.get(&url)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["id"], "api.context.session_expired.app_error");
    assert_eq!(r.body["status_code"], 401);
    let r = send(
        c.get(&url)
            .header("authorization", format!("BEARER {MM_TOKEN}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], sim.bot_user_id().as_str());
    assert_eq!(r.body["username"], "teleport");
    let r = send(
        c.get(&url)
            .header("authorization", format!("Token {MM_TOKEN}")),
    )
    .await;
    assert_eq!(r.status, 200);

    let r = mm(
        &c,
        &sim,
        Method::GET,
        "/users/email/alice@example.com",
        None,
    )
    .await;
    assert_eq!((r.status, r.body["id"].as_str()), (200, Some(MM_USER)));
    let r = mm(
        &c,
        &sim,
        Method::GET,
        "/users/email/nobody@example.com",
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.body["id"].is_string());

    let r = mm(
        &c,
        &sim,
        Method::GET,
        "/teams/name/eng/channels/name/access-requests",
        None,
    )
    .await;
    assert_eq!(r.body["id"], MM_CH);
    assert_eq!(r.body["team_id"], sim.team_id("eng").unwrap().as_str());
    assert_eq!(
        mm(
            &c,
            &sim,
            Method::GET,
            "/teams/name/eng/channels/name/nope",
            None
        )
        .await
        .status,
        404
    );
    assert_eq!(
        mm(
            &c,
            &sim,
            Method::GET,
            "/teams/name/nope/channels/name/access-requests",
            None
        )
        .await
        .status,
        404
    );

    let pair = json!([sim.bot_user_id(), MM_USER]);
    let r = mm(&c, &sim, Method::POST, "/channels/direct", Some(pair)).await;
    assert_eq!((r.status, r.body["type"].as_str()), (201, Some("D")));
    let dm = r.body["id"].as_str().unwrap().to_owned();
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/channels/direct",
        Some(json!([MM_USER, sim.bot_user_id()])),
    )
    .await;
    assert_eq!(r.body["id"], dm.as_str());
    assert_eq!(
        sim.direct_channel_with(MM_USER).as_deref(),
        Some(dm.as_str())
    );
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": dm, "message": "hi"})),
    )
    .await;
    assert_eq!(r.status, 201);

    sim.revoke_token(MM_TOKEN);
    assert_eq!(
        mm(&c, &sim, Method::GET, "/users/me", None).await.status,
        401
    );
}

#[tokio::test]
async fn mattermost_posts_threads_and_edits() {
    let sim = mattermost_with(MattermostSimConfig::default()).await;
    let c = client();
    let props = json!({"teleport_request_id": "r1"});
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": MM_CH, "message": "req", "props": props})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["user_id"], sim.bot_user_id().as_str());
    assert_eq!(r.body["root_id"], "");
    let root = r.body["id"].as_str().unwrap().to_owned();
    let created = r.body["create_at"].as_i64().unwrap();

    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": MM_CH, "message": "m".repeat(16_383)})),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": MM_CH, "message": "m".repeat(16_384)})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (400, Some("model.post.is_valid.msg.app_error"))
    );
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": "nochannel", "message": "x"})),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": MM_LOCKED, "message": "x"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["id"].as_str()),
        (403, Some("api.context.permissions.app_error"))
    );
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(json!({"channel_id": MM_CH, "message": "x", "root_id": "zzzzzzzzzzzzzzzzzzzzzzzzzz"})),
    )
    .await;
    assert_eq!(r.status, 400);

    let reply_props = json!({"kind": "review"});
    let r = mm(
        &c,
        &sim,
        Method::POST,
        "/posts",
        Some(
            json!({"channel_id": MM_CH, "message": "reply", "root_id": root, "props": reply_props}),
        ),
    )
    .await;
    assert_eq!(r.status, 201);
    let reply = r.body["id"].as_str().unwrap().to_owned();
    let r = mm(
        &c,
        &sim,
        Method::GET,
        &format!("/posts/{reply}/thread"),
        None,
    )
    .await;
    let order: Vec<_> = r.body["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, [reply.clone(), root.clone()]);
    assert_eq!(r.body["posts"][&root]["props"], props);
    assert_eq!(r.body["posts"][&reply]["props"], reply_props);
    assert_eq!(r.body["posts"][&root]["reply_count"], 1);
    assert_eq!(
        mm(
            &c,
            &sim,
            Method::GET,
            "/posts/zzzzzzzzzzzzzzzzzzzzzzzzzz/thread",
            None
        )
        .await
        .status,
        404
    );

    // PATCH keeps props it is not given; PUT replaces them.
    let r = mm(
        &c,
        &sim,
        Method::PUT,
        &format!("/posts/{root}/patch"),
        Some(json!({"message": "approved"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["message"].as_str(), r.body["props"].clone()),
        (Some("approved"), props.clone())
    );
    assert!(r.body["edit_at"].as_i64().unwrap() > created);
    let r = mm(
        &c,
        &sim,
        Method::PUT,
        &format!("/posts/{root}"),
        Some(json!({"id": root, "message": "final"})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["props"], json!({}));
    let r = mm(
        &c,
        &sim,
        Method::PUT,
        &format!("/posts/{root}"),
        Some(json!({"id": reply, "message": "x"})),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = mm(
        &c,
        &sim,
        Method::PUT,
        &format!("/posts/{root}/patch"),
        Some(json!({"message": "m".repeat(16_384)})),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = mm(
        &c,
        &sim,
        Method::PUT,
        "/posts/zzzzzzzzzzzzzzzzzzzzzzzzzz/patch",
        Some(json!({"message": "x"})),
    )
    .await;
    assert_eq!(r.status, 403);
    let p = sim.post(&root).unwrap();
    assert_eq!(p.message, "final");
    let old: Vec<_> = p.history.iter().map(|h| h.message.as_str()).collect();
    assert_eq!(old, ["req", "approved"]);
    assert_eq!(sim.replies(&root).len(), 1);

    // `since` selects posts created or modified after it.
    let r = mm(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{MM_CH}/posts?since={created}"),
        None,
    )
    .await;
    let mut since: Vec<_> = r.body["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    since.sort();
    let mut want = vec![
        root.clone(),
        reply.clone(),
        sim.posts_in(MM_CH)[1].id.clone(),
    ];
    want.sort();
    assert_eq!(since, want);
    let r = mm(
        &c,
        &sim,
        Method::GET,
        &format!("/channels/{MM_CH}/posts?per_page=1"),
        None,
    )
    .await;
    assert_eq!(r.body["order"], json!([reply]));

    // pending_post_id makes a retried create idempotent.
    let body = json!({"channel_id": MM_CH, "message": "once", "pending_post_id": "p-1"});
    let a = mm(&c, &sim, Method::POST, "/posts", Some(body.clone())).await;
    let b = mm(&c, &sim, Method::POST, "/posts", Some(body)).await;
    assert_eq!(a.body["id"], b.body["id"]);
    assert_eq!(sim.posts_in(MM_CH).len(), 4);
}

#[tokio::test]
async fn mattermost_rate_limit_and_faults() {
    let sim = mattermost_with(
        MattermostSimConfig::default()
            .with_rate_limit(RateWindow::new(2, Duration::from_millis(300))),
    )
    .await;
    let c = client();
    let r = mm(&c, &sim, Method::GET, "/users/me", None).await;
    assert_eq!(
        (
            header(&r, "x-ratelimit-limit"),
            header(&r, "x-ratelimit-remaining")
        ),
        ("2", "1")
    );
    assert_eq!(header(&r, "x-ratelimit-reset"), "1");
    mm(&c, &sim, Method::GET, "/users/me", None).await;
    let r = mm(&c, &sim, Method::GET, "/users/me", None).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.text, "limit exceeded\n");
    assert_eq!(
        (
            header(&r, "retry-after"),
            header(&r, "x-ratelimit-remaining")
        ),
        ("1", "0")
    );
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(
        mm(&c, &sim, Method::GET, "/users/me", None).await.status,
        200
    );
    sim.set_rate_limit(None);

    sim.fail_next_on("/posts", 2, 500);
    let post = json!({"channel_id": MM_CH, "message": "x"});
    assert_eq!(
        mm(&c, &sim, Method::GET, "/users/me", None).await.status,
        200
    );
    let r = mm(&c, &sim, Method::POST, "/posts", Some(post.clone())).await;
    assert_eq!((r.status, r.body["status_code"].as_u64()), (500, Some(500)));
    assert_eq!(
        mm(&c, &sim, Method::POST, "/posts", Some(post.clone()))
            .await
            .status,
        500
    );
    assert_eq!(
        mm(&c, &sim, Method::POST, "/posts", Some(post.clone()))
            .await
            .status,
        201
    );
    sim.fail_next(1, 503);
    let r = mm(&c, &sim, Method::POST, "/posts", Some(post.clone())).await;
    assert!(r.status == 503 && r.text.contains("nginx"));
    assert_eq!(sim.posts_in(MM_CH).len(), 1);

    sim.set_bot_member(MM_CH, false);
    assert_eq!(
        mm(&c, &sim, Method::POST, "/posts", Some(post))
            .await
            .status,
        403
    );

    let endpoints: Vec<_> = sim.calls().iter().map(|c| c.endpoint.clone()).collect();
    assert!(endpoints.contains(&"POST /posts".to_owned()));
    assert!(endpoints.contains(&"GET /users/me".to_owned()));
}

// ------------------------------------------------- faults after applying

/// What a reqwest client (the one the plugin uses) gets for a write the
/// simulator applied and then answered with a fault: a status, or a
/// transport error (`Err`) for a reset connection.
async fn outcome(req: reqwest::RequestBuilder) -> Result<u16, reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    resp.bytes().await?;
    Ok(status)
}

/// Each simulator applies a post, then answers 5xx or resets the
/// connection: the post is there, the client saw a failure (a transport
/// error, never a status, for the reset), and the call log says what was
/// applied. The faults are used up; the next post is answered normally.
#[tokio::test]
async fn posts_applied_then_5xx_or_reset_on_every_chat() {
    use teleport_plugin_sim::chat::STATUS_NO_RESPONSE;
    let c = client();

    let slack = slack().await;
    let post = |c: &Client| {
        c.post(format!("{}chat.postMessage", slack.base_url()))
            .bearer_auth(SLACK_TOKEN)
            .json(&json!({"channel": "C100", "text": "x"}))
    };
    slack.fail_after_apply_next_on("chat.postMessage", 1, 503);
    slack.reset_after_apply_next_on("chat.postMessage", 1);
    assert_eq!(outcome(post(&c)).await.unwrap(), 503);
    let err = outcome(post(&c)).await.expect_err("reset: no answer");
    assert!(!err.is_connect() && !err.is_timeout() && err.status().is_none(), "{err:?}");
    assert_eq!(outcome(post(&c)).await.unwrap(), 200);
    assert_eq!(slack.messages_in("C100").len(), 3, "both faulted posts were applied");
    // A refused post (Slack's 200 with "ok": false) is not applied and does
    // not use up the fault.
    slack.fail_after_apply_next_on("chat.postMessage", 1, 500);
    let refused = c
        .post(format!("{}chat.postMessage", slack.base_url()))
        .bearer_auth(SLACK_TOKEN)
        .json(&json!({"channel": "C999", "text": "x"}));
    assert_eq!(outcome(refused).await.unwrap(), 200);
    assert_eq!(outcome(post(&c)).await.unwrap(), 500);
    let faulted = slack.applied_then_faulted();
    let seen: Vec<(u16, Option<u16>, bool)> = faulted
        .iter()
        .map(|r| (r.status, r.applied.as_ref().map(|a| a.status), r.applied.as_ref().unwrap().response["ok"] == true))
        .collect();
    assert_eq!(seen, vec![(503, Some(200), true), (STATUS_NO_RESPONSE, Some(200), true), (500, Some(200), true)]);

    let discord = discord_with(DiscordSimConfig::default()).await;
    let dreq = |c: &Client, method: Method, path: &str, body: Value| {
        c.request(method, format!("{}{path}", discord.base_url()))
            .header("authorization", format!("Bot {DISCORD_TOKEN}"))
            .header("user-agent", UA)
            .json(&body)
    };
    let messages = format!("/channels/{CH}/messages");
    discord.fail_after_apply_next_on("POST /channels/{channel_id}/messages", 1, 500);
    discord.reset_after_apply_next_on("PATCH /channels/{channel_id}/messages/{message_id}", 1);
    assert_eq!(outcome(dreq(&c, Method::POST, &messages, json!({"content": "a"}))).await.unwrap(), 500);
    let id = discord.messages_in(CH)[0].id.clone();
    let err = outcome(dreq(&c, Method::PATCH, &format!("{messages}/{id}"), json!({"content": "b"})))
        .await
        .expect_err("reset: no answer");
    assert!(!err.is_connect() && err.status().is_none(), "{err:?}");
    assert_eq!(discord.messages_in(CH)[0].content, "b", "the edit was applied");
    assert_eq!(outcome(dreq(&c, Method::POST, &messages, json!({"content": "c"}))).await.unwrap(), 200);
    assert_eq!(discord.messages_in(CH).len(), 2);
    let statuses: Vec<u16> = discord.applied_then_faulted().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, STATUS_NO_RESPONSE]);

    let mm_sim = mattermost_with(MattermostSimConfig::default()).await;
    let mpost = |c: &Client| {
        c.post(format!("{}/api/v4/posts", mm_sim.base_url()))
            .header("authorization", format!("Bearer {MM_TOKEN}"))
            .json(&json!({"channel_id": MM_CH, "message": "x"}))
    };
    mm_sim.reset_after_apply_next_on("POST /posts", 1);
    mm_sim.fail_after_apply_next_on("/posts", 1, 502);
    let err = outcome(mpost(&c)).await.expect_err("reset: no answer");
    assert!(!err.is_connect() && err.status().is_none(), "{err:?}");
    assert_eq!(outcome(mpost(&c)).await.unwrap(), 502);
    // A read on the same path is no write: it does not use up a fault.
    mm_sim.fail_after_apply_next_on("/posts", 1, 500);
    let read = c
        .get(format!("{}/api/v4/channels/{MM_CH}/posts", mm_sim.base_url()))
        .header("authorization", format!("Bearer {MM_TOKEN}"));
    assert_eq!(outcome(read).await.unwrap(), 200);
    assert_eq!(outcome(mpost(&c)).await.unwrap(), 500);
    assert_eq!(outcome(mpost(&c)).await.unwrap(), 201);
    assert_eq!(mm_sim.posts_in(MM_CH).len(), 4, "every faulted post was applied");
    assert_eq!(mm_sim.applied_then_faulted().len(), 3);
}

// ------------------------------------------------ Discord's limits by default

#[tokio::test]
async fn discord_message_creation_is_limited_per_channel_by_default() {
    let sim = discord_with(DiscordSimConfig::default()).await;
    let c = client();
    let mut bucket = None;
    for left in (0..5).rev() {
        let r = dpost(&c, &sim, CH, json!({"content": "hi"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(header(&r, "x-ratelimit-limit"), "5");
        assert_eq!(header(&r, "x-ratelimit-remaining"), left.to_string());
        let after: f64 = header(&r, "x-ratelimit-reset-after").parse().unwrap();
        assert!(after > 0.0 && after <= 5.0, "{after}");
        let b = header(&r, "x-ratelimit-bucket").to_string();
        assert_eq!(bucket.get_or_insert_with(|| b.clone()), &b, "one bucket for the route");
        assert!(r.headers.get("x-ratelimit-scope").is_none(), "the scope comes with 429s only");
    }
    let r = dpost(&c, &sim, CH, json!({"content": "sixth"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "x-ratelimit-scope"), "user");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    assert!(r.headers.get("x-ratelimit-global").is_none());
    assert_eq!(r.body["global"], false);
    let retry = r.body["retry_after"].as_f64().expect("retry_after is a float");
    assert!(retry > 0.0 && retry <= 5.0, "{retry}");
    let whole: f64 = header(&r, "retry-after").parse().unwrap();
    assert!(whole >= retry && whole <= 5.0, "Retry-After {whole} rounds {retry} up");
    assert_eq!(dpost(&c, &sim, CH2, json!({"content": "other channel"})).await.status, 200, "per channel");
    // Reads of the channel are not the message-creation bucket.
    assert_eq!(dc(&c, &sim, Method::GET, &format!("/channels/{CH}/messages"), None).await.status, 200);
    assert_eq!(sim.messages_in(CH).len(), 5);
}

#[tokio::test]
async fn discord_global_limit_is_fifty_a_second_by_default() {
    let sim = discord_with(DiscordSimConfig::default()).await;
    let c = client();
    let replies = futures::future::join_all((0..150).map(|_| dc(&c, &sim, Method::GET, "/users/@me", None))).await;
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok + limited.len(), 150);
    assert!(!limited.is_empty(), "150 calls at once exceed 50 per second");
    assert!(ok >= 50, "{ok} calls passed");
    for r in limited {
        assert_eq!(r.body["global"], true);
        assert_eq!(header(r, "x-ratelimit-global"), "true");
        assert_eq!(header(r, "x-ratelimit-scope"), "global");
        assert!(r.body["retry_after"].as_f64().is_some_and(|s| s > 0.0 && s <= 1.0), "{}", r.text);
        assert!(r.headers.get("x-ratelimit-bucket").is_none(), "no route bucket in a global 429");
    }
}

#[tokio::test]
async fn discord_enforced_nonces_are_per_author_across_channels() {
    let sim = discord_with(DiscordSimConfig::default()).await;
    let c = client();
    let first = dpost(&c, &sim, CH, json!({"content": "a", "nonce": "same-nonce", "enforce_nonce": true})).await;
    assert_eq!(first.status, 200);
    // The same author, the same nonce, another channel: the first message.
    let again = dpost(&c, &sim, CH2, json!({"content": "b", "nonce": "same-nonce", "enforce_nonce": true})).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["channel_id"], CH);
    assert!(sim.messages_in(CH2).is_empty(), "nothing created in the second channel");
    // Without enforce_nonce the nonce is only echoed.
    let plain = dpost(&c, &sim, CH2, json!({"content": "c", "nonce": "same-nonce"})).await;
    assert_ne!(plain.body["id"], first.body["id"]);
    assert_eq!(sim.messages_in(CH2).len(), 1);
}

#[tokio::test]
async fn discord_invalid_requests_earn_a_temporary_ban() {
    let ban = Duration::from_millis(800);
    let sim = discord_with(DiscordSimConfig::default().with_invalid_limit(RateWindow::new(6, Duration::from_secs(600)), ban)).await;
    let c = client();
    let bad_token = || c.get(format!("{}/users/@me", sim.base_url())).header("authorization", "Bot wrong").header("user-agent", UA);
    for _ in 0..3 {
        assert_eq!(send(bad_token()).await.status, 401);
    }
    assert_eq!(dpost(&c, &sim, LOCKED, json!({"content": "x"})).await.status, 403);
    // Not invalid: a missing channel (404), a bad body (400), a success.
    assert_eq!(dpost(&c, &sim, "1299999999999999999", json!({"content": "x"})).await.status, 404);
    assert_eq!(dpost(&c, &sim, CH, json!({})).await.status, 400);
    assert_eq!(dc(&c, &sim, Method::GET, "/users/@me", None).await.status, 200);
    assert_eq!(sim.invalid_requests(), 4);
    // A route limit's 429 counts too.
    sim.set_route_limit("GET /users/@me", Some(RateWindow::new(1, Duration::from_secs(60))));
    assert_eq!(dc(&c, &sim, Method::GET, "/users/@me", None).await.status, 200);
    assert_eq!(dc(&c, &sim, Method::GET, "/users/@me", None).await.status, 429);
    assert_eq!(sim.invalid_requests(), 5);
    assert!(!sim.is_banned());
    assert_eq!(send(bad_token()).await.status, 401, "the sixth invalid answer is still given");
    assert!(sim.is_banned());
    assert_eq!(sim.bans(), 1);

    // Banned: every call, valid or not, meets a bare 429.
    sim.set_route_limit("GET /users/@me", None);
    for r in [dc(&c, &sim, Method::GET, "/users/@me", None).await, dpost(&c, &sim, CH2, json!({"content": "x"})).await] {
        assert_eq!(r.status, 429);
        assert_eq!(r.body["code"], 0);
        assert!(r.body["message"].as_str().unwrap().contains("blocked from accessing our API temporarily"), "{}", r.text);
        assert!(r.body.get("retry_after").is_none() && r.body.get("global").is_none(), "{}", r.text);
        let named: Vec<&str> = r.headers.keys().map(|k| k.as_str()).filter(|k| k.starts_with("x-ratelimit") || *k == "retry-after").collect();
        assert!(named.is_empty(), "no rate-limit headers during a ban: {named:?}");
    }
    assert!(sim.messages_in(CH2).is_empty());
    let start = Instant::now();
    while sim.is_banned() {
        assert!(start.elapsed() < ban * 5, "the ban ends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dc(&c, &sim, Method::GET, "/users/@me", None).await.status, 200, "lifted after its time");
}

// --------------------------------------------- Mattermost's cap on `since`

#[tokio::test]
async fn mattermost_since_returns_at_most_a_thousand_posts() {
    let sim = mattermost_with(MattermostSimConfig::default()).await;
    let c = client();
    let since = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64 - 1;
    let first = sim.post_as(MM_USER, MM_CH, "first");
    for i in 0..1004 {
        sim.post_as(MM_USER, MM_CH, &format!("chatter {i}"));
    }
    let last = sim.post_as(MM_USER, MM_CH, "last");
    let r = mm(&c, &sim, Method::GET, &format!("/channels/{MM_CH}/posts?since={since}&page=0&per_page=5000"), None).await;
    assert_eq!(r.status, 200);
    let order: Vec<&str> = r.body["order"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(order.len(), 1000, "capped, page and per_page ignored");
    assert!(order.contains(&first.as_str()), "the least recently updated are kept");
    assert!(!order.contains(&last.as_str()), "the newest fall off");
    // Pages reach every post.
    let newest = mm(&c, &sim, Method::GET, &format!("/channels/{MM_CH}/posts?page=0&per_page=200"), None).await;
    assert_eq!(newest.body["order"][0], last.as_str());
    let oldest = mm(&c, &sim, Method::GET, &format!("/channels/{MM_CH}/posts?page=5&per_page=200"), None).await;
    let ids: Vec<&Value> = oldest.body["order"].as_array().unwrap().iter().collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(ids.last().unwrap().as_str(), Some(first.as_str()));
}
