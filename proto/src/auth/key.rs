//! The group key: the secret every peer of a group is given, its id and its legacy-call token.

use std::fmt;

use hmac::{KeyInit, Mac};

use super::{
    HmacSha256, KEY_ID_LABEL, KEY_ID_LEN, KeyError, LEGACY_LABEL, MAX_KEY_LEN, MIN_KEY_LEN,
    ROOT_LABEL, hex, hmac,
};

/// A group key: the secret every peer of a group is given, and what is derived from it.
#[derive(Clone)]
pub struct GroupKey {
    pub(super) root: [u8; 32],
    pub(super) id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for GroupKey {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupKey(id {})", self.fingerprint())
    }
}

impl GroupKey {
    /// The group key for the secret `key` (the bytes of what the user typed).
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                len: key.len(),
                min: MIN_KEY_LEN,
            });
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        let root = hmac(ROOT_LABEL, &[key]);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hmac(&root, &[KEY_ID_LABEL])[..KEY_ID_LEN]);
        Ok(GroupKey { root, id })
    }

    /// The key id in hex: tells keys apart in logs without revealing them.
    pub fn fingerprint(&self) -> String {
        hex(&self.id)
    }

    /// The token a caller of the legacy methods that change playback presents in the
    /// [`LEGACY_TOKEN_METADATA`](super::LEGACY_TOKEN_METADATA) metadata entry: lowercase hex of
    /// `HMAC-SHA256(root, "music262 legacy calls v1")`. It is derived from the key rather than
    /// the key itself, so that someone who reads it off the (unencrypted) connection can send
    /// legacy commands but cannot seal peer frames.
    pub fn legacy_token(&self) -> String {
        hex(&hmac(&self.root, &[LEGACY_LABEL]))
    }

    /// Whether `presented` is the legacy token, compared in constant time.
    pub fn legacy_token_matches(&self, presented: &str) -> bool {
        // Comparing tags of both strings rather than the strings hides where they differ and
        // how long the presented one is; `verify_slice` compares in constant time.
        let want = hmac(&self.root, &[b"compare", self.legacy_token().as_bytes()]);
        let mut got = HmacSha256::new_from_slice(&self.root).expect("any key length");
        got.update(b"compare");
        got.update(presented.trim().as_bytes());
        got.verify_slice(&want).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::key;

    #[test]
    fn keys_shorter_than_the_minimum_or_longer_than_the_maximum_are_refused() {
        assert_eq!(
            GroupKey::new(b"short").unwrap_err(),
            KeyError::TooShort { len: 5, min: 12 }
        );
        assert!(matches!(
            GroupKey::new(&[b'x'; MAX_KEY_LEN + 1]),
            Err(KeyError::TooLong { .. })
        ));
        assert!(GroupKey::new(&[b'x'; MIN_KEY_LEN]).is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let k = key("correct horse battery");
        let shown = format!("{k:?}");
        assert!(!shown.contains("horse"));
        assert!(shown.contains(&k.fingerprint()));
    }

    #[test]
    fn the_legacy_token_matches_only_itself() {
        let k = key("a shared group key");
        let token = k.legacy_token();
        assert_eq!(token.len(), 64);
        assert!(k.legacy_token_matches(&token));
        assert!(!k.legacy_token_matches("a shared group key"));
        assert!(!k.legacy_token_matches(""));
        assert!(!key("another group key").legacy_token_matches(&token));
    }
}
