//! Teleport identities: the TLS client certificate, its private key and the
//! cluster CAs used to verify Auth, parsed from an identity file (`tctl auth
//! sign --format=file`, tbot's `identity` output) or from the TLS triple
//! (`client_crt`, `client_key`, `root_cas`).
//!
//! Parsing is pure and never panics: malformed input yields an
//! [`IdentityError`] naming the part that is wrong. Private key material never
//! appears in `Debug` output or error messages.

pub mod cas;
pub mod files;
mod parse;
pub mod publish;
pub mod source;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::timefmt::rfc3339;
pub use parse::{parse_identity_file, parse_tls_triple};

/// A loaded, validated Teleport identity.
pub struct Identity {
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cas: Vec<CertificateDer<'static>>,
    /// Teleport user the certificate was issued to (subject CN).
    pub username: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The SSH certificate of an identity file, when present.
    pub ssh: Option<SshCertInfo>,
    /// Number of `@cert-authority` lines (SSH host CAs).
    pub ssh_host_cas: usize,
    /// Short SHA-256 fingerprint of the TLS certificate, to tell rotations
    /// apart in logs and metrics.
    pub fingerprint: String,
}

/// What the plugin reports about an identity file's SSH certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshCertInfo {
    pub algorithm: String,
    pub principals: Vec<String>,
    pub valid_before: SystemTime,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("username", &self.username)
            .field("not_after", &rfc3339(self.not_after))
            .field("fingerprint", &self.fingerprint)
            .field("cas", &self.cas.len())
            .field("ssh", &self.ssh)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Identity {
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    pub fn cas(&self) -> &[CertificateDer<'static>] {
        &self.cas
    }

    /// Time left before the TLS certificate expires (zero when expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }

    /// Refuses an identity whose credentials have all expired, with a message
    /// that says how to renew it.
    pub fn ensure_unexpired(&self, now: SystemTime) -> Result<(), IdentityError> {
        if now < self.not_after {
            return Ok(());
        }
        let ssh_valid = self.ssh.as_ref().is_some_and(|s| now < s.valid_before);
        if ssh_valid {
            // Only the TLS certificate is used to reach Auth, so an identity
            // with a live SSH certificate but an expired TLS one is still unusable.
            return Err(IdentityError::Expired {
                not_after: self.not_after,
                ago: now.duration_since(self.not_after).unwrap_or_default(),
                what: "its TLS certificate",
            });
        }
        Err(IdentityError::Expired {
            not_after: self.not_after,
            ago: now.duration_since(self.not_after).unwrap_or_default(),
            what: "every credential in it",
        })
    }
}

pub type SharedIdentity = Arc<Identity>;

/// Why an identity could not be used. Each variant names the part at fault.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {what} {path:?}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the identity is empty; expected the output of `tctl auth sign --format=file` or tbot's `identity` output")]
    Empty,
    #[error("malformed PEM in {part}: {reason}")]
    Pem { part: &'static str, reason: String },
    #[error("{part} is missing: {hint}")]
    Missing { part: &'static str, hint: &'static str },
    #[error("the private key is not usable: {0}")]
    Key(String),
    #[error("{part} is not a valid X.509 certificate: {reason}")]
    Certificate { part: &'static str, reason: String },
    #[error("the TLS certificate does not match the private key; the identity was assembled from different files")]
    KeyMismatch,
    #[error("the SSH certificate on line {line} is malformed: {reason}")]
    SshCertificate { line: usize, reason: String },
    #[error(
        "the identity expired at {} ({} ago): {what} is past its expiry. Renew it: when tbot writes it, check that tbot is running and can reach the cluster; for a file made with `tctl auth sign`, sign a new one (`tctl auth sign --user=<plugin user> --format=file --out=<path> --ttl=<duration>`)",
        rfc3339(*not_after),
        humantime::format_duration(Duration::from_secs(ago.as_secs()))
    )]
    Expired {
        not_after: SystemTime,
        ago: Duration,
        what: &'static str,
    },
}
