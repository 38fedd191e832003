//! Verifying Slack's request signatures (`X-Slack-Signature`, version `v0`):
//! HMAC-SHA256, keyed with the app's signing secret, over the bytes
//! `v0:{X-Slack-Request-Timestamp}:{raw body}`, sent as `v0=` + hex.
//!
//! Pure apart from the replay record: the caller passes the clock. A request
//! is refused when a header is missing or malformed, when its timestamp is
//! more than five minutes from now (either way), when the MAC differs
//! (compared in constant time by `ring::hmac::verify`), or when the same
//! signature was already accepted within the window (a replay).

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

use crate::config::Secret;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-slack-signature";
/// Header carrying the Unix time the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-slack-request-timestamp";
/// Largest difference between the request's timestamp and our clock.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// Signatures remembered for replay detection; beyond it the oldest go.
/// Only requests with a valid MAC are remembered, so only Slack fills it.
const MAX_REMEMBERED: usize = 100_000;

/// Why a request was refused; the words never include the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MissingTimestamp,
    BadTimestamp,
    /// More than [`MAX_SKEW`] from our clock.
    Stale,
    MissingSignature,
    /// Not `v0=` followed by 64 hex digits.
    MalformedSignature,
    Mismatch,
    Replayed,
}

impl Rejection {
    /// Short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::MissingTimestamp => "missing_timestamp",
            Self::BadTimestamp => "bad_timestamp",
            Self::Stale => "stale_timestamp",
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::Mismatch => "bad_signature",
            Self::Replayed => "replayed",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingTimestamp => "no X-Slack-Request-Timestamp header",
            Self::BadTimestamp => "X-Slack-Request-Timestamp is not a Unix time",
            Self::Stale => "X-Slack-Request-Timestamp is more than 5 minutes from this host's clock (a replay, or a clock out of sync)",
            Self::MissingSignature => "no X-Slack-Signature header",
            Self::MalformedSignature => "X-Slack-Signature is not a v0 signature",
            Self::Mismatch => "X-Slack-Signature does not match the body (wrong signing secret, or the body was altered)",
            Self::Replayed => "this signed request was already received",
        })
    }
}

/// Checks signatures with one signing secret and remembers accepted ones.
pub struct Verifier {
    key: hmac::Key,
    seen: Mutex<Seen>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

/// Accepted signatures, in arrival order, with their timestamps.
#[derive(Default)]
struct Seen {
    order: VecDeque<(i64, [u8; 32])>,
    set: HashSet<[u8; 32]>,
}

impl Seen {
    /// Records `mac`; false when it was already there.
    fn insert(&mut self, ts: i64, mac: [u8; 32], now: i64) -> bool {
        // Entries past the window can go: their requests are stale anyway.
        let horizon = now - MAX_SKEW.as_secs() as i64;
        while let Some((t, m)) = self.order.front().copied() {
            if t >= horizon && self.order.len() < MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            self.set.remove(&m);
        }
        if !self.set.insert(mac) {
            return false;
        }
        self.order.push_back((ts, mac));
        true
    }
}

impl Verifier {
    pub fn new(signing_secret: &Secret) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, signing_secret.expose().as_bytes()), seen: Mutex::default() }
    }

    /// Verifies one request given its two headers and raw body.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Rejection> {
        let ts_text = timestamp.map(str::trim).filter(|t| !t.is_empty()).ok_or(Rejection::MissingTimestamp)?;
        let ts: i64 = ts_text.parse().map_err(|_| Rejection::BadTimestamp)?;
        let now = unix(now);
        if now.abs_diff(ts) > MAX_SKEW.as_secs() {
            return Err(Rejection::Stale);
        }
        let sig = signature.map(str::trim).filter(|s| !s.is_empty()).ok_or(Rejection::MissingSignature)?;
        let mac: [u8; 32] = sig
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or(Rejection::MalformedSignature)?;
        hmac::verify(&self.key, &base_string(ts_text, body), &mac).map_err(|_| Rejection::Mismatch)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(ts, mac, now) { Ok(()) } else { Err(Rejection::Replayed) }
    }
}

/// `X-Slack-Signature` for `body` sent at `timestamp` (what Slack computes).
pub fn sign(signing_secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_secret.expose().as_bytes());
    format!("v0={}", hex::encode(hmac::sign(&key, &base_string(timestamp, body)).as_ref()))
}

fn base_string(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut base = Vec::with_capacity(body.len() + timestamp.len() + 4);
    base.extend_from_slice(b"v0:");
    base.extend_from_slice(timestamp.as_bytes());
    base.push(b':');
    base.extend_from_slice(body);
    base
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of Slack's "Verifying requests from Slack" page.
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn doc_now() -> SystemTime {
        at(1_531_420_618 + 30)
    }

    #[test]
    fn slacks_documented_example_verifies() {
        let secret = Secret::new(DOC_SECRET);
        assert_eq!(sign(&secret, DOC_TS, DOC_BODY.as_bytes()), DOC_SIG);
        let v = Verifier::new(&secret);
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), DOC_BODY.as_bytes(), doc_now()), Ok(()));
    }

    #[test]
    fn tampering_is_refused() {
        let v = Verifier::new(&Secret::new(DOC_SECRET));
        let body = DOC_BODY.as_bytes();
        let now = doc_now();
        let altered = DOC_BODY.replace("roadrunner", "coyote");
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), altered.as_bytes(), now), Err(Rejection::Mismatch));
        assert_eq!(v.verify(Some("1531420619"), Some(DOC_SIG), body, now), Err(Rejection::Mismatch), "the timestamp is signed too");
        let other = Verifier::new(&Secret::new("another-secret"));
        assert_eq!(other.verify(Some(DOC_TS), Some(DOC_SIG), body, now), Err(Rejection::Mismatch));
        let mut flipped = DOC_SIG.to_string();
        flipped.replace_range(10..11, if &DOC_SIG[10..11] == "0" { "1" } else { "0" });
        assert_eq!(v.verify(Some(DOC_TS), Some(&flipped), body, now), Err(Rejection::Mismatch));
        assert_eq!(v.verify(None, Some(DOC_SIG), body, now), Err(Rejection::MissingTimestamp));
        assert_eq!(v.verify(Some(" "), Some(DOC_SIG), body, now), Err(Rejection::MissingTimestamp));
        assert_eq!(v.verify(Some("soon"), Some(DOC_SIG), body, now), Err(Rejection::BadTimestamp));
        assert_eq!(v.verify(Some(DOC_TS), None, body, now), Err(Rejection::MissingSignature));
        assert_eq!(v.verify(Some(DOC_TS), Some(&DOC_SIG.replace("v0=", "v1=")), body, now), Err(Rejection::MalformedSignature));
        assert_eq!(v.verify(Some(DOC_TS), Some("v0=abcd"), body, now), Err(Rejection::MalformedSignature));
        assert_eq!(v.verify(Some(DOC_TS), Some(&DOC_SIG.replace('a', "z")), body, now), Err(Rejection::MalformedSignature));
        // None of these was remembered: the genuine request still passes once.
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), body, now), Ok(()));
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_are_refused_both_ways() {
        let v = Verifier::new(&Secret::new(DOC_SECRET));
        let body = DOC_BODY.as_bytes();
        let ts = 1_531_420_618;
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), body, at(ts + 301)), Err(Rejection::Stale));
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), body, at(ts - 301)), Err(Rejection::Stale), "from the future");
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), body, at(ts + 300)), Ok(()), "the edge is inside");
    }

    #[test]
    fn a_replay_within_the_window_is_refused() {
        let v = Verifier::new(&Secret::new(DOC_SECRET));
        let body = DOC_BODY.as_bytes();
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), body, doc_now()), Ok(()));
        assert_eq!(v.verify(Some(DOC_TS), Some(DOC_SIG), body, doc_now()), Err(Rejection::Replayed));
        assert_eq!(v.verify(Some(DOC_TS), Some(&DOC_SIG.to_uppercase().replace("V0=", "v0=")), body, doc_now()), Err(Rejection::Replayed), "hex case does not make it new");
        // A fresh request from Slack is accepted next to it.
        let secret = Secret::new(DOC_SECRET);
        let ts = (1_531_420_618 + 60).to_string();
        let sig = sign(&secret, &ts, b"payload=%7B%7D");
        assert_eq!(v.verify(Some(&ts), Some(&sig), b"payload=%7B%7D", doc_now()), Ok(()));
    }

    #[test]
    fn the_replay_record_forgets_past_the_window_and_stays_bounded() {
        let mut seen = Seen::default();
        assert!(seen.insert(1000, [1; 32], 1000));
        assert!(!seen.insert(1000, [1; 32], 1000));
        assert!(seen.insert(1400, [2; 32], 1400), "the first one is now outside the window");
        assert_eq!(seen.order.len(), 1);
        for i in 0..(MAX_REMEMBERED + 10) {
            let mut mac = [0; 32];
            mac[..8].copy_from_slice(&(i as u64).to_le_bytes());
            mac[31] = 9;
            seen.insert(1400, mac, 1400);
        }
        assert!(seen.order.len() <= MAX_REMEMBERED && seen.set.len() == seen.order.len());
    }
}
