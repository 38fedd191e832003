//! Identity parsing, following Teleport's identity-file rules: the first PEM
//! private key is the user key, the first certificate is the TLS client
//! certificate and every further certificate is a TLS CA; a line starting
//! with an SSH certificate type is the SSH certificate and `@cert-authority`
//! lines are SSH host CAs. Other lines are ignored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Identity, IdentityError, SshCertInfo};

/// Parses an identity file.
pub fn parse_identity_file(data: &[u8]) -> Result<Identity, IdentityError> {
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(IdentityError::Empty);
    }
    let sections = pem_sections(data, "the identity file")?;
    let mut key = None;
    let mut certs = Vec::new();
    for (kind, der) in sections {
        match kind {
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
                if key.is_none() =>
            {
                key = Some(private_key(kind, der)?);
            }
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            _ => {}
        }
    }
    let key = key.ok_or(IdentityError::Missing {
        part: "the private key",
        hint: "an identity file starts with a PEM private key block",
    })?;
    let mut certs = certs.into_iter();
    let cert = certs.next().ok_or(IdentityError::Missing {
        part: "the TLS certificate",
        hint: "the identity file must contain the TLS client certificate after the SSH certificate; sign it with `tctl auth sign --format=file` (not `--format=openssh`)",
    })?;
    let cas: Vec<_> = certs.collect();
    if cas.is_empty() {
        return Err(IdentityError::Missing {
            part: "the TLS CA certificates",
            hint: "the identity file must end with the cluster's TLS CA certificates",
        });
    }
    let (ssh, ssh_host_cas) = ssh_parts(data)?;
    build(vec![cert], key, cas, ssh, ssh_host_cas)
}

/// Parses the TLS triple: client certificate (chain), private key, CAs.
pub fn parse_tls_triple(cert_pem: &[u8], key_pem: &[u8], cas_pem: &[u8]) -> Result<Identity, IdentityError> {
    let chain: Vec<CertificateDer<'static>> = pem_sections(cert_pem, "client_crt")?
        .into_iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if chain.is_empty() {
        return Err(IdentityError::Missing {
            part: "the client certificate (client_crt)",
            hint: "client_crt must hold a PEM CERTIFICATE block",
        });
    }
    let key = pem_sections(key_pem, "client_key")?
        .into_iter()
        .find(|(k, _)| {
            matches!(k, SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey)
        })
        .map(|(k, der)| private_key(k, der))
        .transpose()?
        .ok_or(IdentityError::Missing {
            part: "the private key (client_key)",
            hint: "client_key must hold a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
        })?;
    let cas: Vec<_> = pem_sections(cas_pem, "root_cas")?
        .into_iter()
        .filter(|(k, _)| *k == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if cas.is_empty() {
        return Err(IdentityError::Missing {
            part: "the CA certificates (root_cas)",
            hint: "root_cas must hold the cluster's TLS CA certificates (PEM CERTIFICATE blocks)",
        });
    }
    build(chain, key, cas, None, 0)
}

fn pem_sections(data: &[u8], part: &'static str) -> Result<Vec<(SectionKind, Vec<u8>)>, IdentityError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem { part, reason: describe_pem_error(&e) })
}

/// Describes a PEM error without echoing the data it was found in.
fn describe_pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a BEGIN line has no matching END line (truncated file?)".into(),
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        Error::Base64Decode(_) => "a block's base64 body is corrupt".into(),
        Error::Io(e) => format!("I/O error: {e}"),
        Error::NoItemsFound => "no PEM blocks found".into(),
        _ => "unreadable PEM data".into(),
    }
}

fn private_key(kind: SectionKind, der: Vec<u8>) -> Result<PrivateKeyDer<'static>, IdentityError> {
    PrivateKeyDer::from_pem(kind, der).ok_or_else(|| IdentityError::Key("unsupported key block".into()))
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cas: Vec<CertificateDer<'static>>,
    ssh: Option<SshCertInfo>,
    ssh_host_cas: usize,
) -> Result<Identity, IdentityError> {
    let leaf = CertInfo::read(&chain[0], "the TLS certificate")?;
    for ca in &cas {
        CertInfo::read(ca, "a TLS CA certificate")?;
    }
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| IdentityError::Key("not a supported RSA, ECDSA or Ed25519 key, or the key is corrupt".into()))?;
    match rustls::sign::CertifiedKey::new(chain.clone(), signer).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(IdentityError::KeyMismatch);
        }
        // The provider could not compare (unknown public key encoding); the TLS
        // handshake will still fail loudly if they do not match.
        Err(_) => {}
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &chain[0]);
    Ok(Identity {
        cert_chain: chain,
        key,
        cas,
        username: leaf.common_name,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        ssh,
        ssh_host_cas,
        fingerprint: hex::encode(&digest.as_ref()[..8]),
    })
}

struct CertInfo {
    common_name: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl CertInfo {
    fn read(der: &CertificateDer<'_>, part: &'static str) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Certificate { part, reason: e.to_string() })?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let validity = cert.validity();
        Ok(Self {
            common_name,
            not_before: unix(validity.not_before.timestamp()),
            not_after: unix(validity.not_after.timestamp()),
        })
    }
}

fn unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Describes an SSH certificate error without echoing the data it was found
/// in (ssh-key's messages can quote decoded bytes of the file).
fn describe_ssh_error(e: &ssh_key::Error) -> &'static str {
    use ssh_key::Error;
    match e {
        Error::AlgorithmUnknown | Error::AlgorithmUnsupported { .. } => "unknown or unsupported key algorithm",
        Error::Encoding(_) | Error::FormatEncoding | Error::TrailingData { .. } => {
            "its base64 body is corrupt or truncated"
        }
        Error::Time => "its validity period is invalid",
        Error::Version { .. } => "unsupported certificate version",
        _ => "unreadable certificate",
    }
}

/// Finds the SSH certificate line and counts `@cert-authority` lines.
fn ssh_parts(data: &[u8]) -> Result<(Option<SshCertInfo>, usize), IdentityError> {
    let text = String::from_utf8_lossy(data);
    let mut cert = None;
    let mut cas = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let first = line.split_whitespace().next().unwrap_or_default();
        if first == "@cert-authority" {
            cas += 1;
        } else if cert.is_none() && first.ends_with("-cert-v01@openssh.com") {
            let parsed = ssh_key::Certificate::from_openssh(line)
                .map_err(|e| IdentityError::SshCertificate { line: i + 1, reason: describe_ssh_error(&e).into() })?;
            cert = Some(SshCertInfo {
                algorithm: first.to_string(),
                principals: parsed.valid_principals().to_vec(),
                valid_before: UNIX_EPOCH + Duration::from_secs(parsed.valid_before()),
            });
        }
    }
    Ok((cert, cas))
}
