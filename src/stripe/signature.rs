//! Verification of Stripe's `Stripe-Signature` header:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">[,v1=…][,v0=…]`.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// Stripe's own default for how far the signed timestamp may be from now.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The result of a signature check.
pub type Result<T, E = SignatureError> = std::result::Result<T, E>;

/// Why a webhook's `Stripe-Signature` was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The request has no `Stripe-Signature` header.
    #[error("missing Stripe-Signature header")]
    Missing,
    /// The header does not parse; says why.
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(String),
    /// No `v1` signature matches the payload under any active secret.
    #[error("no v1 signature in the Stripe-Signature header matches the payload")]
    Mismatch,
    /// The signed timestamp is too far from now (a replayed or delayed delivery).
    #[error(
        "signature timestamp {timestamp} is more than {tolerance_secs} s away from now ({now})"
    )]
    TimestampOutOfTolerance {
        /// The signed timestamp, in seconds since the Unix epoch.
        timestamp: i64,
        /// Now, in seconds since the Unix epoch.
        now: i64,
        /// The accepted gap, in seconds.
        tolerance_secs: u64,
    },
}

impl SignatureError {
    /// The API error code: `missing_signature`, `malformed_signature`, `signature_mismatch`
    /// or `timestamp_out_of_tolerance`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_signature",
            Self::Malformed(_) => "malformed_signature",
            Self::Mismatch => "signature_mismatch",
            Self::TimestampOutOfTolerance { .. } => "timestamp_out_of_tolerance",
        }
    }
}

/// Checks signatures against every active webhook secret, so a delivery signed while a
/// secret is being rolled (one `v1` per secret) is accepted.
#[derive(Clone)]
pub struct Verifier {
    secrets: Vec<Vec<u8>>,
    tolerance_secs: u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    /// Each secret is the whole `whsec_…` string, whose bytes are the HMAC key (as Stripe
    /// uses it). Empty secrets are dropped: an empty key would let anyone sign.
    /// `tolerance` is counted in whole seconds.
    pub fn new(secrets: impl IntoIterator<Item = impl AsRef<str>>, tolerance: Duration) -> Self {
        let secrets = secrets
            .into_iter()
            .map(|s| s.as_ref().as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        Self {
            secrets,
            tolerance_secs: tolerance.as_secs(),
        }
    }

    /// A mismatched signature is reported as such whatever its timestamp; only an
    /// authentic timestamp is then checked against `now_secs ± tolerance` (edges included).
    pub fn verify(&self, header: Option<&str>, payload: &[u8], now_secs: i64) -> Result<()> {
        let header = Header::parse(header.ok_or(SignatureError::Missing)?)?;

        let mut matched = Choice::from(0);
        for secret in &self.secrets {
            let expected = v1_mac(secret, header.timestamp_raw, payload);
            for candidate in &header.signatures {
                matched |= expected.ct_eq(candidate);
            }
        }
        if !bool::from(matched) {
            return Err(SignatureError::Mismatch);
        }

        if now_secs.abs_diff(header.timestamp) > self.tolerance_secs {
            return Err(SignatureError::TimestampOutOfTolerance {
                timestamp: header.timestamp,
                now: now_secs,
                tolerance_secs: self.tolerance_secs,
            });
        }
        Ok(())
    }
}

/// HMAC-SHA256 of `"{timestamp}.{payload}"`: the `v1` scheme.
pub(crate) fn v1_mac(secret: &[u8], timestamp: &str, payload: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

struct Header<'a> {
    timestamp: i64,
    // The signed text is the timestamp exactly as sent, not its re-formatted value.
    timestamp_raw: &'a str,
    // Decoded `v1` values; ones that are not 64 hex digits are left out, as they can never match.
    signatures: Vec<[u8; 32]>,
}

impl<'a> Header<'a> {
    fn parse(header: &'a str) -> Result<Self> {
        let malformed = |what: &str| SignatureError::Malformed(what.to_owned());
        let mut timestamp = None;
        let mut signatures = Vec::new();
        let mut has_v1 = false;

        for pair in header.split(',') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                return Err(malformed("expected comma-separated key=value pairs"));
            };
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err(malformed("more than one t= timestamp"));
                    }
                    timestamp = Some(value);
                }
                "v1" => {
                    has_v1 = true;
                    let mut decoded = [0u8; 32];
                    if hex::decode_to_slice(value, &mut decoded).is_ok() {
                        signatures.push(decoded);
                    }
                }
                // Other schemes, such as the v0 Stripe adds to test events, are not trusted.
                _ => {}
            }
        }

        let timestamp_raw = timestamp.ok_or_else(|| malformed("no t= timestamp"))?;
        let timestamp = Some(timestamp_raw)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| malformed("t= is not a whole number of seconds"))?;
        if !has_v1 {
            return Err(malformed("no v1= signature"));
        }
        Ok(Self {
            timestamp,
            timestamp_raw,
            signatures,
        })
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stripe::signer::sign;

    const SECRET: &str = "whsec_test_primary";
    const OLD_SECRET: &str = "whsec_test_rolled_out";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;
    const T: i64 = 1_790_848_807;

    fn verifier() -> Verifier {
        Verifier::new([SECRET], DEFAULT_TOLERANCE)
    }

    fn v1(secret: &str, t: i64, body: &[u8]) -> String {
        hex::encode(v1_mac(secret.as_bytes(), &t.to_string(), body))
    }

    fn code(result: Result<()>) -> &'static str {
        result.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn valid_signature_is_accepted() {
        let header = sign(SECRET, BODY, T);
        verifier().verify(Some(&header), BODY, T).unwrap();

        let spaced = format!(" t={T} , v1={} ", v1(SECRET, T, BODY));
        verifier().verify(Some(&spaced), BODY, T).unwrap();
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        // Computed outside Rust: HMAC-SHA256(key = SECRET bytes, "{T}.{BODY}").
        let header =
            format!("t={T},v1=f2668965a074bf870240cc1217114ee6b494acad103432c273e6fca33530a7a0");
        verifier().verify(Some(&header), BODY, T).unwrap();
        assert_eq!(sign(SECRET, BODY, T), header);
    }

    #[test]
    fn any_matching_v1_is_accepted() {
        let header = format!(
            "t={T},v1={},v1={}",
            v1(OLD_SECRET, T, BODY),
            v1(SECRET, T, BODY)
        );
        verifier().verify(Some(&header), BODY, T).unwrap();
    }

    #[test]
    fn rotated_secrets_are_all_tried() {
        let both = Verifier::new([OLD_SECRET, SECRET], DEFAULT_TOLERANCE);
        both.verify(Some(&sign(SECRET, BODY, T)), BODY, T).unwrap();
        both.verify(Some(&sign(OLD_SECRET, BODY, T)), BODY, T)
            .unwrap();
    }

    #[test]
    fn only_v1_is_trusted() {
        let with_fake_v0 = format!("t={T},v1={},v0=6ffbb59b2300aae63f2", v1(SECRET, T, BODY));
        verifier().verify(Some(&with_fake_v0), BODY, T).unwrap();

        // A correct HMAC under another scheme name does not count.
        let v0_only = format!("t={T},v0={}", v1(SECRET, T, BODY));
        assert_eq!(
            code(verifier().verify(Some(&v0_only), BODY, T)),
            "malformed_signature"
        );
    }

    #[test]
    fn missing_header_is_reported() {
        let err = verifier().verify(None, BODY, T).unwrap_err();
        assert!(matches!(err, SignatureError::Missing));
        assert_eq!(err.code(), "missing_signature");
    }

    #[test]
    fn malformed_headers_are_reported() {
        let sig = v1(SECRET, T, BODY);
        for header in [
            String::new(),
            "   ".to_owned(),
            "garbage".to_owned(),
            format!("t={T};v1={sig}"),
            format!("t={T},v1={sig},"),
            format!("v1={sig}"),
            format!("t={T}"),
            format!("t={T},v0={sig}"),
            format!("t=abc,v1={sig}"),
            format!("t=,v1={sig}"),
            format!("t=-{T},v1={sig}"),
            format!("t=+{T},v1={sig}"),
            format!("t=1.5,v1={sig}"),
            format!("t=99999999999999999999,v1={sig}"),
            format!("t={T},t={T},v1={sig}"),
        ] {
            let err = verifier().verify(Some(&header), BODY, T).unwrap_err();
            assert!(
                matches!(err, SignatureError::Malformed(_)),
                "{header:?} gave {err:?}"
            );
            assert_eq!(err.code(), "malformed_signature");
        }
    }

    #[test]
    fn wrong_signatures_are_mismatches() {
        let header = sign(SECRET, BODY, T);
        let tampered = br#"{"id":"evt_2","object":"event"}"#;
        assert_eq!(
            code(verifier().verify(Some(&header), tampered, T)),
            "signature_mismatch"
        );
        // The timestamp is part of what is signed.
        let moved = header.replacen(&T.to_string(), &(T + 1).to_string(), 1);
        assert_eq!(
            code(verifier().verify(Some(&moved), BODY, T)),
            "signature_mismatch"
        );
        let other_secret = sign(OLD_SECRET, BODY, T);
        assert_eq!(
            code(verifier().verify(Some(&other_secret), BODY, T)),
            "signature_mismatch"
        );
        // Values that are not 64 hex digits never match, but do not make the header malformed.
        for bad in ["zz", "abcd", &"g".repeat(64), &v1(SECRET, T, BODY)[..62]] {
            let header = format!("t={T},v1={bad}");
            assert_eq!(
                code(verifier().verify(Some(&header), BODY, T)),
                "signature_mismatch"
            );
        }
        // A forged signature is a mismatch even when its timestamp is also stale.
        let stale_forgery = sign(OLD_SECRET, BODY, T - 3600);
        assert_eq!(
            code(verifier().verify(Some(&stale_forgery), BODY, T)),
            "signature_mismatch"
        );
    }

    #[test]
    fn empty_secrets_are_ignored() {
        let verifier = Verifier::new(["", SECRET], DEFAULT_TOLERANCE);
        assert_eq!(
            code(verifier.verify(Some(&sign("", BODY, T)), BODY, T)),
            "signature_mismatch"
        );
        let none = Verifier::new(Vec::<String>::new(), DEFAULT_TOLERANCE);
        assert_eq!(
            code(none.verify(Some(&sign(SECRET, BODY, T)), BODY, T)),
            "signature_mismatch"
        );
    }

    #[test]
    fn tolerance_includes_its_edges_both_ways() {
        let header = sign(SECRET, BODY, T);
        let verifier = verifier();
        for now in [T - 300, T + 300] {
            verifier.verify(Some(&header), BODY, now).unwrap();
        }
        for now in [T - 301, T + 301] {
            let err = verifier.verify(Some(&header), BODY, now).unwrap_err();
            assert_eq!(err.code(), "timestamp_out_of_tolerance");
            assert!(matches!(
                err,
                SignatureError::TimestampOutOfTolerance { timestamp: T, now: n, tolerance_secs: 300 }
                    if n == now
            ));
        }

        let strict = Verifier::new([SECRET], Duration::from_secs(5));
        strict.verify(Some(&header), BODY, T + 5).unwrap();
        assert_eq!(
            code(strict.verify(Some(&header), BODY, T + 6)),
            "timestamp_out_of_tolerance"
        );
    }

    #[test]
    fn secrets_never_show_in_output() {
        let verifier = verifier();
        assert!(!format!("{verifier:?}").contains(SECRET));
        let errors = [
            verifier.verify(None, BODY, T),
            verifier.verify(Some("t=x"), BODY, T),
            verifier.verify(Some(&sign(OLD_SECRET, BODY, T)), BODY, T),
            verifier.verify(Some(&sign(SECRET, BODY, T)), BODY, T + 1000),
        ];
        for err in errors.into_iter().map(Result::unwrap_err) {
            assert!(!err.to_string().contains("whsec_"), "{err}");
            assert!(!format!("{err:?}").contains("whsec_"), "{err:?}");
        }
    }
}
