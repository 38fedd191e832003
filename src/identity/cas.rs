//! PEM bundles of CA certificates (`teleport.web_ca`), read here at the bottom
//! of the stack so configuration validation and the connection code share one
//! reading.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Reads the PEM certificates of `teleport.web_ca`.
pub fn load_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_cas(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// PEM certificates; at least one.
pub fn parse_cas(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}
