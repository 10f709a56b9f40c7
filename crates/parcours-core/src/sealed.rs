//! Secrets Parcours must keep readable (a destination's signing secret, a webhook source's
//! platform secret, the preference links' secret) are sealed in storage when the node has a
//! key (`security.secrets_key`): ChaCha20-Poly1305 under that key, stored as
//! `enc:v1:<base64 of nonce and ciphertext>`. The nonce is derived from the key and the
//! secret (HMAC-SHA256), so sealing needs no randomness and a nonce never serves two
//! different secrets. Values stored before the key was set stay readable as they are, and
//! are sealed the next time they are saved.
//!
//! A rotation installs the keys being rotated out as previous keys: values sealed with them
//! still open, and are sealed with the current key when written again.
//!
//! The key is installed once per process, when the node starts; documents that hold a
//! secret seal it on serialisation and open it on deserialisation ([`serde_sealed`]).

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use sha2::Sha256;

/// What a sealed value starts with.
pub const PREFIX: &str = "enc:v1:";

static KEY: OnceLock<[u8; 32]> = OnceLock::new();
/// Keys secrets were sealed with before the current one (a key being rotated out): opened
/// with, never sealed with.
static PREVIOUS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();

/// Why a stored secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("this secret is sealed and this node has no key to open it: set security.secrets_key to the key it was sealed with")]
    NoKey,
    #[error("this secret does not open with this node's key (security.secrets_key is not the key it was sealed with, or the value was altered)")]
    WrongKey,
}

/// Reads a key: base64 of 32 bytes (`head -c 32 /dev/urandom | base64`).
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| "security.secrets_key must be base64 (of 32 random bytes)".to_string())?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "security.secrets_key must be 32 bytes once decoded, not {}",
            b.len()
        )
    })
}

/// Installs the process's key. Once: installing another key later is refused.
pub fn install(key: [u8; 32]) -> Result<(), String> {
    let set = KEY.get_or_init(|| key);
    if *set == key {
        Ok(())
    } else {
        Err("another secrets key is already installed in this process".into())
    }
}

/// Installs the keys secrets may still be sealed with (a rotation under way), tried after
/// the current key. Once, like the current key.
pub fn install_previous(keys: Vec<[u8; 32]>) -> Result<(), String> {
    let set = PREVIOUS.get_or_init(|| keys.clone());
    if *set == keys {
        Ok(())
    } else {
        Err("other previous secrets keys are already installed in this process".into())
    }
}

/// Whether secrets are sealed in this process.
pub fn installed() -> bool {
    KEY.get().is_some()
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key"))
}

/// Seals `plain` under `key`.
pub fn seal_with(key: &[u8; 32], plain: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(b"parcours-sealed-nonce\0");
    m.update(plain.as_bytes());
    let digest = m.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&digest[..NONCE_LEN]);
    let mut data = plain.as_bytes().to_vec();
    aead(key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .expect("sealing a short secret");
    let mut out = nonce.to_vec();
    out.extend(data);
    format!("{PREFIX}{}", BASE64.encode(out))
}

/// Opens a stored value with `key` (`None`: no key). A value without [`PREFIX`] was stored
/// before sealing: it is returned as it is.
pub fn open_with(key: Option<&[u8; 32]>, stored: &str) -> Result<String, OpenError> {
    open_with_any(key, stored)
}

/// Opens a stored value with the first of `keys` that opens it (none: [`OpenError::NoKey`]).
pub fn open_with_any<'a>(
    keys: impl IntoIterator<Item = &'a [u8; 32]>,
    stored: &str,
) -> Result<String, OpenError> {
    let Some(sealed) = stored.strip_prefix(PREFIX) else {
        return Ok(stored.to_string());
    };
    let mut tried = false;
    for k in keys {
        tried = true;
        if let Some(plain) = open_sealed(k, sealed) {
            return Ok(plain);
        }
    }
    Err(if tried {
        OpenError::WrongKey
    } else {
        OpenError::NoKey
    })
}

fn open_sealed(key: &[u8; 32], sealed: &str) -> Option<String> {
    let bytes = BASE64.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, data) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = aead(key)
        .open_in_place(nonce, Aad::empty(), &mut data)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// Seals with the process's key; without one, the value is kept as it is.
pub fn seal(plain: &str) -> String {
    match KEY.get() {
        Some(k) => seal_with(k, plain),
        None => plain.to_string(),
    }
}

/// Opens with the process's key, or else with a previous one.
pub fn open(stored: &str) -> Result<String, OpenError> {
    open_with_any(
        KEY.get()
            .into_iter()
            .chain(PREVIOUS.get().into_iter().flatten()),
        stored,
    )
}

/// `#[serde(with = "parcours_core::sealed::serde_sealed")]` on a secret field: sealed when
/// written, opened when read.
pub mod serde_sealed {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
        // Already sealed (a document copied as it was stored): kept.
        if v.starts_with(super::PREFIX) {
            return s.serialize_str(v);
        }
        s.serialize_str(&super::seal(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let stored = String::deserialize(d)?;
        super::open(&stored).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [7; 32];

    #[test]
    fn sealed_secrets_open_with_their_key_only() {
        let s = seal_with(&K, "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        assert!(s.starts_with(PREFIX), "{s}");
        assert!(!s.contains("c2VjcmV0"));
        assert_eq!(
            open_with(Some(&K), &s).unwrap(),
            "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="
        );
        assert_eq!(open_with(None, &s), Err(OpenError::NoKey));
        assert_eq!(open_with(Some(&[8; 32]), &s), Err(OpenError::WrongKey));
        // Altered: refused.
        let mut bytes = BASE64.decode(&s[PREFIX.len()..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let altered = format!("{PREFIX}{}", BASE64.encode(bytes));
        assert_eq!(open_with(Some(&K), &altered), Err(OpenError::WrongKey));
        assert_eq!(open_with(Some(&K), "enc:v1:!!"), Err(OpenError::WrongKey));
        assert_eq!(open_with(Some(&K), "enc:v1:"), Err(OpenError::WrongKey));
        // Stored before sealing: read as it is.
        assert_eq!(open_with(Some(&K), "plain").unwrap(), "plain");
        // Two secrets, two nonces; the same secret, the same value.
        assert_ne!(
            seal_with(&K, "a")[..PREFIX.len() + 16],
            seal_with(&K, "b")[..PREFIX.len() + 16]
        );
        assert_eq!(seal_with(&K, "a"), seal_with(&K, "a"));
    }

    #[test]
    fn a_rotation_opens_with_any_of_its_keys() {
        let old = seal_with(&K, "a secret");
        let new = seal_with(&[8; 32], "a secret");
        assert_eq!(open_with_any(&[[8; 32], K], &old).unwrap(), "a secret");
        assert_eq!(open_with_any(&[[8; 32], K], &new).unwrap(), "a secret");
        assert_eq!(open_with_any(&[[8; 32]], &old), Err(OpenError::WrongKey));
        assert_eq!(
            open_with_any(&[] as &[[u8; 32]], &old),
            Err(OpenError::NoKey)
        );
    }

    #[test]
    fn keys_are_base64_of_32_bytes() {
        assert_eq!(parse_key(&BASE64.encode([1u8; 32])).unwrap(), [1u8; 32]);
        assert!(parse_key("short").is_err());
        assert!(parse_key(&BASE64.encode([1u8; 16]))
            .unwrap_err()
            .contains("16"));
    }
}
