//! Destination secrets at rest: sealed with AES-256-GCM under a server key, so a copy of the
//! database alone does not reveal them. The key is 32 random bytes, base64 in a file of the
//! data directory (created on first start, mode 0600) or given to every server process
//! (`--notify-key`, env `ZEROTRACE_NOTIFY_KEY`) when they share a PostgreSQL database.
//! Sealed form: `v1:` + base64(nonce ‖ ciphertext ‖ tag); the rule id is the associated
//! data, so a sealed secret copied onto another rule does not open.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("notification key {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("notification key: {0} (expected 32 bytes, base64)")]
    BadKey(String),
    #[error(
        "a sealed secret does not open with this server's notification key (was the key changed?)"
    )]
    Open,
}

#[derive(Clone)]
pub struct SecretKey(Aes256Gcm);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_base64(text: &str) -> Result<SecretKey, SealError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SealError::BadKey(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey(format!("{} bytes", bytes.len())));
        }
        Ok(SecretKey(
            Aes256Gcm::new_from_slice(&bytes).map_err(|e| SealError::BadKey(e.to_string()))?,
        ))
    }

    /// Reads the key file, creating it with a fresh random key (mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SealError> {
        let io = |error| SealError::Io {
            path: path.display().to_string(),
            error,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => SecretKey::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let text = B64.encode(key);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut f) => {
                        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
                        f.sync_all().map_err(io)?;
                        SecretKey::from_base64(&text)
                    }
                    // Another process created it first: its key stands.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        SecretKey::from_base64(&std::fs::read_to_string(path).map_err(io)?)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn seal(&self, secret: &str, context: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: context,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{}", B64.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<String, SealError> {
        let bytes = sealed
            .strip_prefix("v1:")
            .and_then(|b| B64.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or(SealError::Open)?;
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Open)?;
        let plain = self
            .0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain).map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_rule() {
        let dir = std::env::temp_dir().join(format!("zt-notify-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let key = SecretKey::load_or_create(&dir).unwrap();
        let again = SecretKey::load_or_create(&dir).unwrap();
        let sealed = key.seal("whsec_123", b"rule-1");
        assert!(!sealed.contains("whsec_123"));
        assert_eq!(again.open(&sealed, b"rule-1").unwrap(), "whsec_123");
        assert!(key.open(&sealed, b"rule-2").is_err());
        let other = SecretKey::from_base64(&B64.encode([9u8; 32])).unwrap();
        assert!(other.open(&sealed, b"rule-1").is_err());
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(&dir).unwrap();
    }
}
