//! How secrets are made and kept: random with a readable prefix, stored only as a hash.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The hex SHA-256 of a secret: what the store keeps of write keys and tokens.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random secret with a readable prefix (`wk_…` for write keys, `pat_…` for tokens).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    let body: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{body}")
}
