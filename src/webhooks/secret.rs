//! Endpoint secrets in the Standard Webhooks form, and the signature header made with
//! the current secret and, during a rotation, the previous one.

use base64::Engine as _;
use rand::RngCore;

use crate::config::Secret;

/// Random bytes in a new secret (the specification allows 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// How long the previous secret keeps signing after a rotation.
pub const ROTATION_OVERLAP_MS: i64 = 24 * 60 * 60 * 1000;

/// A fresh `whsec_` + base64 secret.
pub fn generate() -> Secret {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    Secret::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// A secret that cannot sign (not base64 after `whsec_`).
#[derive(Debug, thiserror::Error)]
#[error("the endpoint's signing secret is malformed")]
pub struct MalformedSecret;

/// The `webhook-signature` value: one `v1,<base64>` per secret, space-separated.
pub fn signature_header(
    secrets: &[&Secret],
    message_id: &str,
    timestamp_secs: i64,
    body: &str,
) -> Result<String, MalformedSecret> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let signer =
            standardwebhooks::Webhook::new(secret.expose()).map_err(|_| MalformedSecret)?;
        signatures.push(
            signer
                .sign(message_id, timestamp_secs, body.as_bytes())
                .map_err(|_| MalformedSecret)?,
        );
    }
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_whsec_base64_of_32_bytes_and_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let encoded = a.expose().strip_prefix("whsec_").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), SECRET_BYTES);
    }

    #[test]
    fn two_secrets_make_two_signatures() {
        let (a, b) = (generate(), generate());
        let header = signature_header(&[&a, &b], "msg_1", 1_700_000_000, "{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
    }
}
