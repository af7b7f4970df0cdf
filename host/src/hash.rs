//! Content hashes: the SHA-256 hex digests that name caches, pin plugins and key cells.
//! A leaf: imports nothing of the crate.

use sha2::{Digest, Sha256};

/// Bytes as lowercase hex digits, two per byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The first 12 bytes of the SHA-256 of `value`'s compact JSON, 24 hex digits: cell keys and
/// the parameters' tag in file names. Pinned by `experiment::key`'s tests.
pub fn json_digest(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    hex(&Sha256::digest(text.as_bytes())[..12])
}
