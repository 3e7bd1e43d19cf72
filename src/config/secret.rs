//! Secrets (passwords, private keys, tokens) that must never reach a log.

use std::fmt;

/// A secret value. `Debug` and `Display` print `***`, so a config dumped
/// with `{:?}` or a log line that includes it cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// Reads a secret from a file, dropping one trailing newline (editors
    /// and `echo` add one; systemd credentials keep what they were given).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Secret> {
        let mut bytes = std::fs::read(path)?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Ok(Secret(bytes))
    }

    /// The secret itself; call only where it is handed to the protocol.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, for passwords and tokens.
    pub fn expose_str(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}
