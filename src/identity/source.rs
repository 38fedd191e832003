//! Where an identity comes from (files today; a Kubernetes Secret builds on
//! the same type).

use std::path::{Path, PathBuf};

use super::{Identity, IdentityError, parse_identity_file, parse_tls_triple};

/// A configured identity location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityFiles {
    /// An identity file (`tctl auth sign --format=file`, tbot `identity`).
    IdentityFile(PathBuf),
    /// The TLS triple.
    Tls { cert: PathBuf, key: PathBuf, cas: PathBuf },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::Read { what, path: path.display().to_string(), source })
}

impl IdentityFiles {
    /// Reads and parses the files.
    pub fn load(&self) -> Result<Identity, IdentityError> {
        match self {
            Self::IdentityFile(path) => parse_identity_file(&read("identity file", path)?),
            Self::Tls { cert, key, cas } => parse_tls_triple(
                &read("client certificate (client_crt)", cert)?,
                &read("client key (client_key)", key)?,
                &read("CA certificates (root_cas)", cas)?,
            ),
        }
    }

    /// The files this source reads.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Self::IdentityFile(p) => vec![p],
            Self::Tls { cert, key, cas } => vec![cert, key, cas],
        }
    }

    /// Digest of the files' current content (read errors included), to
    /// notice changes cheaply.
    pub fn fingerprint_of_content(&self) -> Vec<u8> {
        let paths = self.paths();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in paths {
            match std::fs::read(p) {
                Ok(b) => ctx.update(&b),
                Err(e) => ctx.update(format!("error:{:?}", e.kind()).as_bytes()),
            }
            ctx.update(b"\0");
        }
        ctx.finish().as_ref().to_vec()
    }

    pub fn describe(&self) -> String {
        match self {
            Self::IdentityFile(p) => format!("identity file {}", p.display()),
            Self::Tls { cert, .. } => format!("TLS files ({} …)", cert.display()),
        }
    }
}
