//! Inngest signing keys, both ways.
//!
//! A key reads `signkey-<env>-<hex>`. Requests paysteps sends an app carry
//! `X-Inngest-Signature: t=<unix s>&s=<hex HMAC-SHA256(key, body ‖ t)>`, where the HMAC key
//! is the ASCII text after `signkey-<env>-` (not its hex decoding) and the body is RFC 8785
//! canonical JSON: the SDK re-serializes what it parsed before checking. An app calling
//! paysteps (`/fn/register`) sends `Authorization: Bearer signkey-<env>-<hex(sha256(bytes))>`,
//! the key's hex decoded, hashed and hex encoded again.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// A signing key with its fallback, kept while a key is being rotated.
#[derive(Clone)]
pub struct SigningKeys {
    current: SigningKey,
    fallback: Option<SigningKey>,
}

/// One `signkey-<env>-<hex>` key.
#[derive(Clone)]
pub struct SigningKey {
    /// `signkey-<env>-`, or empty when the key was given without it.
    prefix: String,
    /// The part after the prefix: the HMAC key, as text.
    secret: Secret,
}

/// Why a signing key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a signing key must read signkey-<env>-<hex>, with an even number of hex digits")]
pub struct MalformedKey;

impl SigningKey {
    /// Reads `signkey-prod-…`, `signkey-test-…` or a bare hex key.
    pub fn parse(value: &str) -> Result<SigningKey, MalformedKey> {
        let value = value.trim();
        let (prefix, hex_part) = match value.strip_prefix("signkey-") {
            Some(rest) => {
                let (env, hex_part) = rest.split_once('-').ok_or(MalformedKey)?;
                (format!("signkey-{env}-"), hex_part)
            }
            None => (String::new(), value),
        };
        if hex_part.is_empty() || hex::decode(hex_part).is_err() {
            return Err(MalformedKey);
        }
        Ok(SigningKey {
            prefix,
            secret: Secret::new(hex_part),
        })
    }

    /// `X-Inngest-Signature` for `body` sent at `unix_s`.
    pub fn sign(&self, body: &[u8], unix_s: i64) -> String {
        let t = unix_s.to_string();
        format!("t={t}&s={}", hex::encode(self.mac(body, &t)))
    }

    fn mac(&self, body: &[u8], t: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(body);
        mac.update(t.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// What an app sends as `Authorization: Bearer …` when it holds this key.
    pub fn hashed(&self) -> String {
        let bytes = hex::decode(self.secret.expose()).expect("checked at parse");
        format!("{}{}", self.prefix, hex::encode(Sha256::digest(bytes)))
    }

    /// Whether `bearer` (the `Authorization` value after `Bearer `) is this key, hashed or
    /// plain, with or without its prefix.
    fn accepts(&self, bearer: &str) -> bool {
        let bearer = bearer.trim();
        let strip = |s: &str| -> String {
            match s.strip_prefix("signkey-").and_then(|r| r.split_once('-')) {
                Some((_, rest)) => rest.to_owned(),
                None => s.to_owned(),
            }
        };
        let given = strip(bearer);
        let hashed = strip(&self.hashed());
        let plain = self.secret.expose();
        bool::from(given.as_bytes().ct_eq(hashed.as_bytes()))
            || bool::from(given.as_bytes().ct_eq(plain.as_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}[redacted])", self.prefix)
    }
}

impl SigningKeys {
    /// The current key and, while rotating, the previous one.
    pub fn new(current: SigningKey, fallback: Option<SigningKey>) -> SigningKeys {
        SigningKeys { current, fallback }
    }

    /// The key requests are signed with.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Whether an `Authorization` header value proves the app holds one of the keys.
    pub fn authorizes(&self, authorization: Option<&str>) -> bool {
        let Some(bearer) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return false;
        };
        self.current.accepts(bearer) || self.fallback.as_ref().is_some_and(|k| k.accepts(bearer))
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("current", &self.current)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

/// The RFC 8785 canonical form of `value`: the bytes to send and to sign.
pub fn canonical<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KEY: &str = "signkey-test-12345678";

    #[test]
    fn the_bearer_is_the_prefixed_sha256_of_the_hex_decoded_key() {
        // The example in Inngest's SDK specification.
        let key = SigningKey::parse(KEY).unwrap();
        assert_eq!(
            key.hashed(),
            "signkey-test-b2ed992186a5cb19f6668aade821f502c1d00970dfd0e35128d51bac4649916c"
        );
    }

    #[test]
    fn the_signature_is_an_hmac_keyed_by_the_hex_text_over_body_then_time() {
        let key = SigningKey::parse(KEY).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"12345678").unwrap();
        mac.update(br#"{"a":1}1700000000"#);
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            key.sign(br#"{"a":1}"#, 1_700_000_000),
            format!("t=1700000000&s={expected}")
        );
    }

    #[test]
    fn keys_accept_the_hashed_or_plain_bearer_and_the_fallback() {
        let current = SigningKey::parse(KEY).unwrap();
        let old = SigningKey::parse("signkey-test-abcdef").unwrap();
        let keys = SigningKeys::new(current.clone(), Some(old.clone()));
        assert!(keys.authorizes(Some(&format!("Bearer {}", current.hashed()))));
        assert!(keys.authorizes(Some(&format!("Bearer {}", old.hashed()))));
        assert!(keys.authorizes(Some("Bearer signkey-test-12345678")));
        assert!(!keys.authorizes(Some("Bearer undefined")));
        assert!(!keys.authorizes(Some("Bearer ")));
        assert!(!keys.authorizes(None));
        let alone = SigningKeys::new(current, None);
        assert!(!alone.authorizes(Some(&format!("Bearer {}", old.hashed()))));
    }

    #[test]
    fn malformed_keys_are_refused_and_keys_never_print() {
        for bad in [
            "",
            "signkey-test-",
            "signkey-test-xyz",
            "signkey-test-123",
            "signkey",
        ] {
            assert_eq!(SigningKey::parse(bad).unwrap_err(), MalformedKey, "{bad}");
        }
        let key = SigningKey::parse(KEY).unwrap();
        assert!(!format!("{key:?}").contains("12345678"));
    }

    #[test]
    fn canonical_json_sorts_keys_and_writes_integral_floats_as_integers() {
        let value = json!({"b": 1.0, "a": {"d": [2.5, 1e21], "c": "é"}});
        assert_eq!(
            String::from_utf8(canonical(&value).unwrap()).unwrap(),
            r#"{"a":{"c":"é","d":[2.5,1e+21]},"b":1}"#
        );
    }
}
