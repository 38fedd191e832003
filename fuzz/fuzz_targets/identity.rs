//! Identity parsing: `parse_identity_file` and `parse_tls_triple` on any
//! bytes, never a panic; what parses can be printed and checked for expiry,
//! and neither the output nor any error shows the private key.
//!
//! Input layout (first byte selects):
//! - `0x01`: the TLS triple, its three files separated by NUL bytes;
//! - `0x02`: the DER of a client certificate, PEM-wrapped into an identity
//!   file with the fixture key and CA (so mutations reach the X.509 fields
//!   behind a matching key, such as the validity dates);
//! - `0x03`: an SSH certificate blob, base64-encoded into the SSH line of
//!   an otherwise valid identity file;
//! - anything else: the whole input is an identity file.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use teleport_plugin::identity::{Identity, IdentityError, parse_identity_file, parse_tls_triple};

/// Test-only identity material (not a credential of any real cluster).
const KEY_PEM: &str = include_str!("../fixtures/key.pem");
const CERT_PEM: &str = include_str!("../fixtures/cert.pem");
const CAS_PEM: &str = include_str!("../fixtures/cas.pem");
const SSH_ALGORITHM: &str = "ssh-ed25519-cert-v01@openssh.com";

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((1, rest)) => {
            let mut parts = rest.splitn(3, |b| *b == 0);
            let (cert, key, cas) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            check(parse_tls_triple(cert, key, cas));
        }
        Some((2, der)) => {
            let file = format!("{KEY_PEM}{}{CAS_PEM}", pem("CERTIFICATE", der));
            check(parse_identity_file(file.as_bytes()));
        }
        Some((3, blob)) => {
            let file = format!(
                "{KEY_PEM}{SSH_ALGORITHM} {} user@host\n{CERT_PEM}{CAS_PEM}",
                base64(blob)
            );
            check(parse_identity_file(file.as_bytes()));
        }
        _ => check(parse_identity_file(data)),
    }
});

fn check(result: Result<Identity, IdentityError>) {
    let key_body = key_body();
    match result {
        Ok(id) => {
            let shown = format!("{id:?}");
            assert!(!shown.contains(key_body), "Debug shows the key: {shown}");
            let now = SystemTime::now();
            let _ = id.remaining(now);
            for when in [
                now,
                UNIX_EPOCH,
                UNIX_EPOCH + Duration::from_secs(253_402_300_799),
            ] {
                if let Err(e) = id.ensure_unexpired(when) {
                    let msg = e.to_string();
                    assert!(msg.contains("expired"), "unclear expiry message: {msg}");
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.trim().is_empty(), "empty error for {e:?}");
            assert!(!msg.contains(key_body), "error shows the key: {msg}");
        }
    }
}

/// The base64 body of the fixture key, which must never be printed.
fn key_body() -> &'static str {
    KEY_PEM.lines().nth(1).unwrap_or_default()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
