//! Signing as Stripe does, for tests and `paysteps trigger`.

use rand::Rng;
use rand::distr::Alphanumeric;

use super::signature::v1_mac;

/// A `Stripe-Signature` header value, `t=<timestamp>,v1=<hex>`, for `payload` signed with
/// the whole `secret` string as the key.
pub fn sign(secret: &str, payload: &[u8], timestamp: i64) -> String {
    let mac = v1_mac(secret.as_bytes(), &timestamp.to_string(), payload);
    format!("t={timestamp},v1={}", hex::encode(mac))
}

/// A fresh webhook secret in Stripe's shape: `whsec_` and 32 random alphanumerics.
pub fn generate_secret() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    format!("whsec_{random}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::signature::{DEFAULT_TOLERANCE, Verifier};

    #[test]
    fn signed_payload_verifies() {
        let secret = generate_secret();
        let payload = br#"{"id":"evt_1","object":"event"}"#;
        let header = sign(&secret, payload, 1_790_848_807);
        assert!(header.starts_with("t=1790848807,v1="));
        assert_eq!(header.len(), "t=1790848807,v1=".len() + 64);
        Verifier::new([&secret], DEFAULT_TOLERANCE)
            .verify(Some(&header), payload, 1_790_848_807)
            .unwrap();
    }

    #[test]
    fn generated_secrets_look_like_stripes_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        for secret in [&a, &b] {
            let random = secret.strip_prefix("whsec_").unwrap();
            assert_eq!(random.len(), 32);
            assert!(random.bytes().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(a, b);
    }
}
