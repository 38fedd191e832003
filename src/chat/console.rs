//! A chat that prints to a writer (stdout by default) instead of posting:
//! for the demo and for dry runs against a real cluster. It keeps what it
//! "posted" in memory so updates, replies and lookups behave like a chat.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::text::{code_safe, truncate};
use super::view::review_status;
use super::{Capabilities, Chat, ChatError, Content, Marker, MessageRef, Place, Reaction, RequestView, Target};

struct Posted {
    place: String,
    marker: Marker,
    at: SystemTime,
}

pub struct ConsoleChat {
    out: Mutex<Box<dyn Write + Send>>,
    posted: Mutex<HashMap<MessageRef, Posted>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Default for ConsoleChat {
    fn default() -> Self {
        Self::new(Box::new(std::io::stdout()))
    }
}

impl ConsoleChat {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out: Mutex::new(out), posted: Mutex::default(), next_id: Default::default() }
    }

    /// A console chat writing into a shared buffer (for tests).
    pub fn buffered() -> (Self, Arc<Mutex<Vec<u8>>>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        (Self::new(Box::new(SharedBuf(buf.clone()))), buf)
    }

    fn print(&self, header: &str, body: &str) {
        let mut out = self.out.lock().expect("poisoned");
        let _ = writeln!(out, "{header}");
        for line in body.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = out.flush();
    }

    fn remember(&self, place: String, content: &Content<'_>) -> MessageRef {
        let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let r = MessageRef { channel_id: place.clone(), message_id: format!("m{n}") };
        self.posted
            .lock()
            .expect("poisoned")
            .insert(r.clone(), Posted { place, marker: content.marker(), at: SystemTime::now() });
        r
    }
}

struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Plain-text rendering of every kind of content.
pub fn render(content: &Content<'_>) -> String {
    match content {
        Content::Card(v) => render_card(v),
        Content::Review(v, i) => match v.reviews.get(*i) {
            Some(r) => {
                let mut s = format!("{} reviewed the request: {} {}", r.author, review_status(r).emoji(), review_status(r).as_str());
                if !r.reason.trim().is_empty() {
                    s.push_str(&format!("\nReason: {}", truncate(&code_safe(&r.reason), 500)));
                }
                s
            }
            None => format!("review #{i} is not known"),
        },
        Content::RequesterNotice(v) => {
            format!("Your access request {} is now {} {}", v.id, v.status.emoji(), v.status.as_str())
        }
    }
}

fn render_card(v: &RequestView) -> String {
    let mut lines = vec![v.title().to_string(), format!("ID: {}", v.id), format!("Cluster: {}", v.cluster)];
    lines.push(format!("User: {}", code_safe(&v.user)));
    if v.logins_by_role.is_empty() {
        lines.push(format!("Role(s): {}", code_safe(&v.roles.join(", "))));
    } else {
        for role in &v.roles {
            let logins = v.logins_by_role.get(role).map(|l| l.join(", ")).unwrap_or_default();
            lines.push(format!("Role: {}  Login(s): {}", code_safe(role), if logins.is_empty() { "-".into() } else { logins }));
        }
    }
    if !v.resources.is_empty() {
        lines.push(format!("Resource(s): {}", code_safe(&v.resources.join(", "))));
    }
    lines.push(format!("Reason: {}", truncate(&code_safe(&v.request_reason), 500)));
    match (&v.link, v.tsh_commands()) {
        (Some(link), _) => lines.push(format!("Link: {link}")),
        (None, Some((approve, deny))) => {
            lines.push(format!("Approve: {approve}"));
            lines.push(format!("Deny: {deny}"));
        }
        _ => {}
    }
    lines.push(format!("Status: {} {}", v.status.emoji(), v.status.as_str()));
    if !v.resolve_reason.trim().is_empty() {
        lines.push(format!("Resolution reason: {}", truncate(&code_safe(&v.resolve_reason), 500)));
    }
    for r in &v.reviews {
        lines.push(format!("Review by {}: {}", r.author, review_status(r).as_str()));
    }
    lines.join("\n")
}

#[async_trait::async_trait]
impl Chat for ConsoleChat {
    fn name(&self) -> &'static str {
        "console"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { threads: true, reviews_on_card: true, reactions: true }
    }

    async fn health_check(&self) -> Result<String, ChatError> {
        Ok("console".into())
    }

    async fn resolve(&self, recipient: &str) -> Result<Target, ChatError> {
        Ok(Target(recipient.to_string()))
    }

    async fn requester_target(&self, user: &str) -> Result<Option<Target>, ChatError> {
        Ok(Some(Target(format!("@{user}"))))
    }

    async fn post(&self, target: &Target, content: Content<'_>) -> Result<MessageRef, ChatError> {
        let r = self.remember(target.0.clone(), &content);
        self.print(&format!("[{}] post to {} ({})", r.message_id, target, content.marker().kind_str()), &render(&content));
        Ok(r)
    }

    async fn update(&self, message: &MessageRef, content: Content<'_>) -> Result<(), ChatError> {
        if !self.posted.lock().expect("poisoned").contains_key(message) {
            return Err(ChatError::gone(format!("message {} in {} does not exist", message.message_id, message.channel_id)));
        }
        self.print(&format!("[{}] update in {}", message.message_id, message.channel_id), &render(&content));
        Ok(())
    }

    async fn reply(&self, parent: &MessageRef, content: Content<'_>) -> Result<MessageRef, ChatError> {
        let r = self.remember(format!("{}/{}", parent.channel_id, parent.message_id), &content);
        self.print(&format!("[{}] reply under {} in {}", r.message_id, parent.message_id, parent.channel_id), &render(&content));
        Ok(r)
    }

    async fn react(&self, message: &MessageRef, reaction: Reaction) -> Result<(), ChatError> {
        let emoji = match reaction {
            Reaction::Approved => "✅",
            Reaction::Denied => "❌",
        };
        self.print(&format!("[{}] reaction {emoji} in {}", message.message_id, message.channel_id), "");
        Ok(())
    }

    async fn find_posted(&self, place: Place<'_>, marker: &Marker, since: SystemTime) -> Result<Option<MessageRef>, ChatError> {
        let place = match place {
            Place::Target(t) => t.0.clone(),
            Place::Thread(m) => format!("{}/{}", m.channel_id, m.message_id),
        };
        Ok(self
            .posted
            .lock()
            .expect("poisoned")
            .iter()
            .find(|(_, p)| p.place == place && p.marker == *marker && p.at >= since)
            .map(|(r, _)| r.clone()))
    }
}
