//! Content hashes: the SHA-256 hex digests that name caches, pin plugins and key cells.
//! A leaf: imports nothing of the crate.

use sha2::{Digest, Sha256};

/// The SHA-256 of `bytes`, 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
