//! Interactive message buttons as the Mattermost server runs them: a click
//! (`POST /api/v4/posts/{post_id}/actions/{action_id}` from a client) makes
//! the server look up the post's action, then POST to its
//! `integration.url` a JSON body naming the clicking user (from the
//! session), the channel, team and post, with the action's `context`. The
//! server signs nothing. It applies the answer: `update` (props kept when
//! the update has none) and `ephemeral_text` to the clicker alone. A
//! non-200 answer is an error for the clicker and nothing is applied.
//! Clients never see `integration` (the server strips it from every post it
//! serves), and action ids must be alphanumeric (the click route's pattern).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{MattermostSim, new_id};

/// How long the server waits for the integration (its default).
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the integration answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionAnswer {
    pub status: u16,
    pub body: Value,
}

/// A message shown to one user only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub user_id: String,
    pub channel_id: String,
    pub root_id: String,
    pub text: String,
}

/// Removes `integration` from every action of a post's attachments, as the
/// server does for every post it sends out.
pub fn strip_integrations(props: &mut Value) {
    if let Some(atts) = props.get_mut("attachments").and_then(Value::as_array_mut) {
        for a in atts {
            if let Some(actions) = a.get_mut("actions").and_then(Value::as_array_mut) {
                for action in actions {
                    if let Some(o) = action.as_object_mut() {
                        o.remove("integration");
                    }
                }
            }
        }
    }
}

/// The action `action_id` of a post's attachments.
fn find_action<'a>(props: &'a Value, action_id: &str) -> Option<&'a Value> {
    props["attachments"].as_array()?.iter().flat_map(|a| a["actions"].as_array().into_iter().flatten()).find(|x| x["id"] == action_id)
}

impl MattermostSim {
    /// `user_id` clicks the button `action_id` on post `post_id`.
    pub async fn click(&self, user_id: &str, post_id: &str, action_id: &str) -> Result<ActionAnswer, String> {
        self.click_with(user_id, post_id, action_id, |_| {}).await
    }

    /// [`click`](Self::click) with the request body altered by `tamper`
    /// before it is sent: what a forger calling the integration URL directly
    /// could send.
    pub async fn click_with(
        &self,
        user_id: &str,
        post_id: &str,
        action_id: &str,
        tamper: impl FnOnce(&mut Value),
    ) -> Result<ActionAnswer, String> {
        if action_id.is_empty() || !action_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("404: no route for action id {action_id:?} (ids must be letters and digits)"));
        }
        let (url, mut body, channel_id, root_id) = {
            let st = self.state();
            let user = st.users.get(user_id).ok_or_else(|| format!("no user {user_id}"))?.clone();
            let post = st.posts.get(post_id).ok_or_else(|| format!("no post {post_id}"))?.clone();
            let action = find_action(&post.props, action_id).ok_or_else(|| format!("post {post_id} has no action {action_id}"))?;
            if action["disabled"] == true {
                return Err(format!("action {action_id} is disabled"));
            }
            let url = action["integration"]["url"].as_str().ok_or("the action has no integration URL")?.to_string();
            let channel = st.channels.get(&post.channel_id).cloned().ok_or("the post's channel is gone")?;
            let team_name = st.teams.iter().find(|(_, id)| **id == channel.team_id).map(|(n, _)| n.clone()).unwrap_or_default();
            let body = json!({
                "user_id": user.id,
                "user_name": user.name,
                "channel_id": channel.id,
                "channel_name": channel.name,
                "team_id": channel.team_id,
                "team_domain": team_name,
                "post_id": post.id,
                "trigger_id": new_id(),
                "type": "button",
                "context": action["integration"]["context"].clone(),
            });
            let root = if post.root_id.is_empty() { post.id.clone() } else { post.root_id.clone() };
            (url, body, channel.id, root)
        };
        tamper(&mut body);
        let answer = post_json(&url, &body).await?;
        if answer.status != 200 {
            return Ok(answer);
        }
        let mut st = self.state();
        if let Some(text) = answer.body["ephemeral_text"].as_str().filter(|t| !t.is_empty()) {
            st.ephemerals.push(Ephemeral { user_id: user_id.into(), channel_id, root_id, text: text.into() });
        }
        if let Some(update) = answer.body.get("update").filter(|u| u.is_object()) {
            let now = st.next_millis();
            if let Some(p) = st.posts.get_mut(post_id) {
                if let Some(m) = update["message"].as_str() {
                    p.message = m.to_string();
                }
                if let Some(props) = update.get("props").filter(|v| v.is_object()) {
                    p.props = props.clone();
                }
                p.update_at = now;
            }
        }
        Ok(answer)
    }

    /// Ephemeral messages shown to `user_id`, oldest first.
    pub fn ephemerals(&self, user_id: &str) -> Vec<Ephemeral> {
        self.state().ephemerals.iter().filter(|e| e.user_id == user_id).cloned().collect()
    }

    /// Whether `user_id`'s email counts as verified (default: yes).
    pub fn set_email_verified(&self, user_id: &str, verified: bool) {
        let mut st = self.state();
        if verified {
            st.unverified.remove(user_id);
        } else {
            st.unverified.insert(user_id.to_string());
        }
    }
}

async fn post_json(url: &str, body: &Value) -> Result<ActionAnswer, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("bad integration URL {url}: {e}"))?;
    let resp = tokio::time::timeout(INTEGRATION_TIMEOUT, client.request(req))
        .await
        .map_err(|_| "the integration did not answer in time".to_string())?
        .map_err(|e| format!("the integration could not be reached: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        // A non-JSON answer is an error for the clicker, as on the server.
        serde_json::from_slice(&bytes).map_err(|e| format!("the integration answered non-JSON: {e}"))?
    };
    Ok(ActionAnswer { status, body })
}
