//! Certificate authorities for the Teleport simulator, generated at run time.
//!
//! Mirrors Teleport's layout: a host CA signs the Auth server certificate
//! (SANs `teleport.cluster.local` and `*.teleport.cluster.local`), a user CA
//! signs client certificates, and SSH CAs sign the SSH certificate that an
//! identity file carries next to the TLS one. One key backs the TLS and the
//! SSH certificate, as in a real identity file: Ed25519, ECDSA P-256 (the
//! `balanced-v1` suite of new clusters, and tbot) or RSA 2048 (the legacy
//! suite of clusters that never chose one), written in the PEM forms Teleport
//! writes them (`PRIVATE KEY` PKCS#8 for Ed25519 and ECDSA, `RSA PRIVATE KEY`
//! PKCS#1 for RSA).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ED25519, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The DNS name Auth servers present and clients verify.
pub const AUTH_SERVER_NAME: &str = "teleport.cluster.local";

pub struct ClusterPki {
    pub cluster_name: String,
    host_ca: CertifiedIssuer<'static, KeyPair>,
    user_ca: CertifiedIssuer<'static, KeyPair>,
    ssh_user_ca: ssh_key::PrivateKey,
    ssh_host_ca: ssh_key::PrivateKey,
}

/// The algorithm of an identity's key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    #[default]
    Ed25519,
    EcdsaP256,
    Rsa2048,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 3] = [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048];

    /// The OpenSSH certificate type of an SSH certificate for such a key.
    pub fn ssh_cert_type(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
            KeyAlgorithm::EcdsaP256 => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            KeyAlgorithm::Rsa2048 => "ssh-rsa-cert-v01@openssh.com",
        }
    }
}

/// A user key: the rcgen key that signs TLS, its SSH public key, and its PEM
/// as Teleport writes it.
struct UserKey {
    tls: KeyPair,
    ssh_public: ssh_key::public::KeyData,
    pem: String,
}

impl UserKey {
    fn generate(alg: KeyAlgorithm) -> Result<Self> {
        match alg {
            KeyAlgorithm::Ed25519 => {
                let tls = KeyPair::generate_for(&PKCS_ED25519)?;
                let public: [u8; 32] =
                    tls.public_key_raw().try_into().context("Ed25519 public key is not 32 bytes")?;
                let ssh_public = ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(public));
                Ok(Self { pem: tls.serialize_pem(), tls, ssh_public })
            }
            KeyAlgorithm::EcdsaP256 => {
                let tls = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
                // rcgen gives the uncompressed SEC1 point.
                let point = ssh_key::public::EcdsaPublicKey::from_sec1_bytes(tls.public_key_raw())
                    .context("ECDSA P-256 public key")?;
                Ok(Self { pem: tls.serialize_pem(), tls, ssh_public: ssh_key::public::KeyData::Ecdsa(point) })
            }
            KeyAlgorithm::Rsa2048 => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).context("RSA key generation")?;
                let pkcs8 = key.to_pkcs8_der().context("RSA key as PKCS#8")?;
                let tls = KeyPair::from_pkcs8_der_and_sign_algo(
                    &PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
                    &PKCS_RSA_SHA256,
                )?;
                let ssh_public = ssh_key::public::KeyData::Rsa(ssh_key::public::RsaPublicKey {
                    e: ssh_key::Mpint::from_positive_bytes(&key.e().to_bytes_be())?,
                    n: ssh_key::Mpint::from_positive_bytes(&key.n().to_bytes_be())?,
                });
                let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).context("RSA key as PKCS#1")?.to_string();
                Ok(Self { tls, ssh_public, pem })
            }
        }
    }
}

/// An identity as `tctl auth sign` would produce it, in both output formats.
#[derive(Clone)]
pub struct IssuedIdentity {
    /// `--format=file`: key, SSH cert, TLS cert, `@cert-authority`, TLS CAs.
    pub identity_file: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cas_pem: String,
}

impl std::fmt::Debug for IssuedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedIdentity { .. }")
    }
}

pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, common_name);
    params.distinguished_name = dn;
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn ssh_ca() -> Result<ssh_key::PrivateKey> {
    let seed: [u8; 32] = rand::random();
    Ok(ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed)))
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl ClusterPki {
    pub fn new(cluster_name: &str) -> Result<Self> {
        Ok(Self {
            cluster_name: cluster_name.to_string(),
            host_ca: ca(cluster_name)?,
            user_ca: ca(cluster_name)?,
            ssh_user_ca: ssh_ca()?,
            ssh_host_ca: ssh_ca()?,
        })
    }

    /// PEM of the host CA: what clients trust to verify Auth.
    pub fn host_ca_pem(&self) -> String {
        self.host_ca.pem()
    }

    pub fn host_ca_der(&self) -> CertificateDer<'static> {
        self.host_ca.der().clone()
    }

    pub fn user_ca_der(&self) -> CertificateDer<'static> {
        self.user_ca.der().clone()
    }

    /// An Auth server certificate signed by the host CA.
    pub fn issue_server_cert(&self, extra_names: &[&str]) -> Result<ServerCert> {
        let mut names = vec![
            AUTH_SERVER_NAME.to_string(),
            format!("*.{AUTH_SERVER_NAME}"),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ];
        names.extend(extra_names.iter().map(|s| s.to_string()));
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, AUTH_SERVER_NAME);
        dn.push(DnType::OrganizationName, "Auth");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.host_ca)?;
        Ok(ServerCert {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// An identity for `user` valid for `ttl` from now.
    pub fn issue_identity(&self, user: &str, ttl: Duration) -> Result<IssuedIdentity> {
        let now = SystemTime::now();
        self.issue_identity_between(user, now - Duration::from_secs(60), now + ttl)
    }

    /// An identity with an explicit validity window (e.g. already expired).
    pub fn issue_identity_between(&self, user: &str, not_before: SystemTime, not_after: SystemTime) -> Result<IssuedIdentity> {
        self.issue_identity_with(user, not_before, not_after, KeyAlgorithm::Ed25519)
    }

    /// An identity whose key is of `alg`.
    pub fn issue_identity_with(
        &self,
        user: &str,
        not_before: SystemTime,
        not_after: SystemTime,
        alg: KeyAlgorithm,
    ) -> Result<IssuedIdentity> {
        let UserKey { tls: key, ssh_public, pem: key_pem } = UserKey::generate(alg)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        dn.push(DnType::OrganizationName, "access-plugin");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = to_offset(not_before);
        params.not_after = to_offset(not_after);
        let cert = params.signed_by(&key, &self.user_ca)?;

        let nonce: [u8; 16] = rand::random();
        let mut builder =
            ssh_key::certificate::Builder::new(nonce.to_vec(), ssh_public, unix_secs(not_before), unix_secs(not_after))?;
        builder.cert_type(ssh_key::certificate::CertType::User)?;
        builder.key_id(user)?;
        builder.valid_principal(user)?;
        builder.extension("permit-pty", "")?;
        let ssh_cert = builder.sign(&self.ssh_user_ca)?;
        let host_ca_line = format!(
            "@cert-authority {name},*.{name} {key} type=host",
            name = self.cluster_name,
            key = self.ssh_host_ca.public_key().to_openssh()?
        );

        let key_pem = with_newline(key_pem);
        let cert_pem = with_newline(cert.pem());
        let cas_pem = with_newline(self.host_ca.pem());
        let identity_file = format!(
            "{key_pem}{ssh}\n{cert_pem}{host_ca_line}\n{cas_pem}",
            ssh = ssh_cert.to_openssh()?,
        );
        Ok(IssuedIdentity { identity_file, cert_pem, key_pem, cas_pem })
    }
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
