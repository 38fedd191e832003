//! The chat clients honour the proxy environment (HTTP(S)_PROXY, NO_PROXY).
//! A binary of its own: it changes the process environment.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use serde_json::json;
use teleport_plugin::chat::Chat;
use teleport_plugin::chat::http::ClientOptions;
use teleport_plugin::chat::slack::SlackChat;
use teleport_plugin::config::Secret;
use teleport_plugin_sim::chat::{ChatSim, SlackSim, SlackSimConfig};

/// A forward proxy stand-in: records the absolute URIs it is asked for and
/// answers like Slack's auth.test.
async fn proxy(
    State(seen): State<Arc<Mutex<Vec<String>>>>,
    req: Request,
) -> axum::Json<serde_json::Value> {
    seen.lock().unwrap().push(req.uri().to_string());
    axum::Json(
        json!({"ok": true, "user": "via-proxy", "user_id": "U1", "bot_id": "B1", "team": "T"}),
    )
}

#[tokio::test]
async fn proxies_come_from_the_environment() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(proxy).with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sim = SlackSim::start(SlackSimConfig::default()).await;
    let opts = ClientOptions {
        request_timeout: Duration::from_secs(3),
        ..ClientOptions::default()
    };

    // SAFETY: this test binary runs this single test; nothing else reads the
    // environment concurrently.
    unsafe {
        std::env::set_var("HTTP_PROXY", format!("http://{proxy_addr}"));
        std::env::set_var("NO_PROXY", "127.0.0.1");
    }
    let proxied = SlackChat::with_options(
        "http://slack.invalid/api/",
        Secret::new("xoxb-sim-token"),
        opts.clone(),
    )
    .unwrap();
    assert_eq!(
        proxied.health_check().await.unwrap(),
        "Slack bot @via-proxy (U1) in workspace T"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["http://slack.invalid/api/auth.test"]
    );

    let direct =
        SlackChat::with_options(&sim.base_url(), Secret::new("xoxb-sim-token"), opts).unwrap();
    direct
        .health_check()
        .await
        .expect("NO_PROXY hosts are reached directly");
    assert_eq!(sim.calls_to("auth.test").len(), 1);
    assert_eq!(seen.lock().unwrap().len(), 1, "the proxy saw nothing more");
}
