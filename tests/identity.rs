//! Identity parsing: valid identities load, malformed ones name the part.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use teleport_plugin::identity::{IdentityError, parse_identity_file, parse_tls_triple};
use teleport_plugin::teleport::{ChannelOptions, DirectDialer, TeleportClient};
use teleport_plugin_sim::pki::{ClusterPki, IssuedIdentity, KeyAlgorithm};
use teleport_plugin_sim::teleport::{SimConfig, TeleportSim};

fn issued() -> IssuedIdentity {
    ClusterPki::new("example.com").unwrap().issue_identity("access-plugin", Duration::from_secs(3600)).unwrap()
}

fn err(data: &str) -> String {
    parse_identity_file(data.as_bytes()).expect_err("must be rejected").to_string()
}

#[test]
fn identity_file_loads_with_its_metadata() {
    let i = issued();
    let id = parse_identity_file(i.identity_file.as_bytes()).unwrap();
    assert_eq!(id.username, "access-plugin");
    assert_eq!(id.cas().len(), 1);
    assert_eq!(id.ssh_host_cas, 1);
    let ssh = id.ssh.as_ref().unwrap();
    assert_eq!(ssh.principals, vec!["access-plugin"]);
    assert!(ssh.algorithm.starts_with("ssh-ed25519-cert-v01"));
    let left = id.not_after.duration_since(SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600));
    assert!(id.ensure_unexpired(SystemTime::now()).is_ok());
    assert_eq!(id.fingerprint.len(), 16);
}

#[test]
fn tls_triple_loads() {
    let i = issued();
    let id = parse_tls_triple(i.cert_pem.as_bytes(), i.key_pem.as_bytes(), i.cas_pem.as_bytes()).unwrap();
    assert_eq!(id.username, "access-plugin");
    assert!(id.ssh.is_none());
}

#[test]
fn debug_output_never_shows_the_key() {
    let i = issued();
    let id = parse_identity_file(i.identity_file.as_bytes()).unwrap();
    let dbg = format!("{id:?}");
    assert!(dbg.contains("<redacted>"));
    let key_body: String = i.key_pem.lines().nth(1).unwrap().chars().take(20).collect();
    assert!(!dbg.contains(&key_body));
}

#[test]
fn empty_input() {
    assert!(matches!(parse_identity_file(b"  \n"), Err(IdentityError::Empty)));
}

#[test]
fn missing_private_key_is_named() {
    let i = issued();
    let without_key = i.identity_file.replace(&i.key_pem, "");
    assert!(err(&without_key).contains("private key is missing"));
}

#[test]
fn missing_tls_certificate_is_named() {
    let i = issued();
    let data = format!("{}{}", i.key_pem, i.identity_file.lines().find(|l| l.contains("-cert-v01")).unwrap());
    assert!(err(&data).contains("TLS certificate is missing"));
}

#[test]
fn missing_cas_are_named() {
    let i = issued();
    let data = i.identity_file.replace(&i.cas_pem, "");
    assert!(err(&data).contains("TLS CA certificates is missing"));
}

#[test]
fn truncated_file_is_reported_as_malformed_pem() {
    let i = issued();
    let cut = &i.identity_file[..i.identity_file.len() - 40];
    let msg = err(cut);
    assert!(msg.contains("malformed PEM in the identity file"), "{msg}");
}

#[test]
fn corrupt_certificate_is_named() {
    let i = issued();
    let body = i.cert_pem.lines().nth(3).unwrap();
    let broken = i.identity_file.replace(body, &"A".repeat(body.len()));
    let msg = err(&broken);
    assert!(msg.contains("TLS certificate is not a valid X.509"), "{msg}");
}

#[test]
fn key_from_another_identity_does_not_match() {
    let a = issued();
    let b = issued();
    let mixed = a.identity_file.replace(&a.key_pem, &b.key_pem);
    assert!(matches!(parse_identity_file(mixed.as_bytes()), Err(IdentityError::KeyMismatch)));
}

#[test]
fn malformed_ssh_certificate_names_its_line() {
    let i = issued();
    let line = i.identity_file.lines().position(|l| l.contains("-cert-v01")).unwrap() + 1;
    let broken = i.identity_file.replace("-cert-v01@openssh.com AAAA", "-cert-v01@openssh.com ####");
    let msg = err(&broken);
    assert!(msg.contains(&format!("SSH certificate on line {line}")), "{msg}");
}

#[test]
fn garbage_never_panics() {
    for data in ["-----BEGIN PRIVATE KEY-----\n", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "\u{0}\u{1}", "@cert-authority\n"] {
        let _ = parse_identity_file(data.as_bytes());
    }
}

#[test]
fn expiry_with_live_ssh_but_dead_tls_says_which() {
    let pki = ClusterPki::new("example.com").unwrap();
    let now = SystemTime::now();
    let i = pki.issue_identity_between("p", now - Duration::from_secs(100), now - Duration::from_secs(10)).unwrap();
    let id = parse_identity_file(i.identity_file.as_bytes()).unwrap();
    // Same window for both certificates: every credential is expired.
    let msg = id.ensure_unexpired(now).unwrap_err().to_string();
    assert!(msg.contains("every credential in it"), "{msg}");
}

/// The identity file `i` with its SSH certificate line replaced by `line`.
fn with_ssh_line(i: &IssuedIdentity, line: &str) -> String {
    i.identity_file.lines().map(|l| if l.contains("-cert-v01@openssh.com") { line } else { l }).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_certificate_that_expired_before_1970_is_refused_clearly() {
    use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ED25519};
    let cert = |cn: &str, years: (i32, i32)| {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    };
    let (leaf, key) = cert("access-plugin", (1960, 1965));
    let (ca, _) = cert("example.com", (1960, 2100));
    let id = parse_tls_triple(leaf.as_bytes(), key.as_bytes(), ca.as_bytes()).unwrap();
    assert!(format!("{id:?}").contains("1965-01-01T00:00:00Z"), "{id:?}");
    let msg = id.ensure_unexpired(SystemTime::now()).unwrap_err().to_string();
    assert!(msg.contains("the identity expired at 1965-01-01T00:00:00Z") && msg.contains("Renew it"), "{msg}");
}

#[test]
fn a_corrupt_ssh_certificate_is_described_without_quoting_it() {
    // A certificate blob whose algorithm field holds text from the file.
    let i = issued();
    let key_line = i.key_pem.lines().nth(1).unwrap();
    let mut blob = Vec::new();
    blob.extend_from_slice(&(key_line.len() as u32).to_be_bytes());
    blob.extend_from_slice(key_line.as_bytes());
    use base64::Engine;
    let line = format!("ssh-ed25519-cert-v01@openssh.com {}", base64::engine::general_purpose::STANDARD.encode(&blob));
    let msg = err(&with_ssh_line(&i, &line));
    assert!(msg.contains("the SSH certificate on line") && msg.contains("malformed"), "{msg}");
    assert!(!msg.contains(key_line), "the error quotes the file: {msg}");
}

/// Identity files with each key type Teleport issues: Ed25519, ECDSA P-256
/// (`balanced-v1` clusters and tbot) and RSA 2048 (the legacy suite), with
/// the key in the PEM form Teleport writes for it.
#[test]
fn identity_files_of_every_key_type_load() {
    let pki = ClusterPki::new("example.com").unwrap();
    let now = SystemTime::now();
    for alg in KeyAlgorithm::ALL {
        let i = pki.issue_identity_with("access-plugin", now - Duration::from_secs(60), now + Duration::from_secs(3600), alg).unwrap();
        let pem_kind = if alg == KeyAlgorithm::Rsa2048 { "-----BEGIN RSA PRIVATE KEY-----" } else { "-----BEGIN PRIVATE KEY-----" };
        assert!(i.identity_file.starts_with(pem_kind), "{alg:?}: {}", &i.identity_file[..40]);
        let id = parse_identity_file(i.identity_file.as_bytes()).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(id.username, "access-plugin", "{alg:?}");
        let ssh = id.ssh.as_ref().unwrap_or_else(|| panic!("{alg:?}: SSH certificate read"));
        assert_eq!(ssh.algorithm, alg.ssh_cert_type(), "{alg:?}");
        assert_eq!(ssh.principals, vec!["access-plugin"], "{alg:?}");
        let triple = parse_tls_triple(i.cert_pem.as_bytes(), i.key_pem.as_bytes(), i.cas_pem.as_bytes());
        assert!(triple.is_ok(), "{alg:?}: {:?}", triple.err());
    }
}

/// The client authenticates to Auth with each key type (mutual TLS signs
/// with the identity's key).
#[tokio::test]
async fn the_client_connects_with_every_key_type() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = TeleportSim::start(SimConfig::default()).await.unwrap();
    let now = SystemTime::now();
    for alg in KeyAlgorithm::ALL {
        let i = sim.pki().issue_identity_with("access-plugin", now - Duration::from_secs(60), now + Duration::from_secs(3600), alg).unwrap();
        let id = Arc::new(parse_identity_file(i.identity_file.as_bytes()).unwrap());
        let dialer = Arc::new(DirectDialer { addr: sim.addr().to_string() });
        let (client, info) = TeleportClient::connect(dialer, id, ChannelOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{alg:?}: {e:#}"));
        assert_eq!(info.cluster_name, sim.cluster_name(), "{alg:?}");
        client.ping().await.unwrap_or_else(|e| panic!("{alg:?}: {e:#}"));
    }
}
