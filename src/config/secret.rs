//! A secret string (chat token) that never prints.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value, for building an Authorization header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A chat token as configured: inline, or a file to read (a value starting
/// with `/`, as the official plugins accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Inline(Secret),
    File(std::path::PathBuf),
}

impl Token {
    /// The token value. A file is read on each call (at most 2000 bytes,
    /// trimmed, as upstream), so a rotated token file is picked up on restart
    /// of the chat client. Errors never include the token.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            Self::Inline(s) => Ok(s.clone()),
            Self::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
                let bytes = &bytes[..bytes.len().min(2000)];
                let t = String::from_utf8_lossy(bytes).trim().to_string();
                if t.is_empty() {
                    Err(format!("the token file {} is empty", path.display()))
                } else {
                    Ok(Secret::new(t))
                }
            }
        }
    }
}
