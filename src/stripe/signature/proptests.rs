//! Properties of the `Stripe-Signature` parser and verifier, over arbitrary and
//! near-valid headers, payloads, secrets and timestamps.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::stripe::signer::sign;

const TOLERANCE: Duration = DEFAULT_TOLERANCE;

fn verifier(secret: &str) -> Verifier {
    Verifier::new([secret], TOLERANCE)
}

/// Timestamps a header can carry: any whole number of seconds since the epoch.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![0..=i64::MAX, 1_000_000_000i64..4_000_000_000]
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof!["whsec_[A-Za-z0-9]{32}", ".{1,40}"]
}

/// Pieces a header is made of, valid or nearly: pairs under the known and unknown
/// schemes, hex of every length, numbers with signs and points, stray separators.
fn header_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        "t=[0-9]{0,22}",
        "t=[-+]?[0-9.]{1,12}",
        "v1=[0-9a-fA-F]{0,66}",
        "v1=[0-9a-f]{64}",
        "v0=[0-9a-z]{0,64}",
        "[a-z0-9]{0,3}=[^,]{0,8}",
        "[ ,=;]{0,3}",
        ".{0,12}",
    ]
}

/// A header joined from up to eight pieces, with or without commas between them.
fn near_valid_header() -> impl Strategy<Value = String> {
    (vec(header_piece(), 0..8), any::<bool>())
        .prop_map(|(pieces, commas)| pieces.join(if commas { "," } else { "" }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_other_header_is_refused_without_a_panic(
        header in prop_oneof![any::<String>(), near_valid_header()],
        payload in vec(any::<u8>(), 0..64),
        now in any::<i64>(),
    ) {
        let result = verifier("whsec_test").verify(Some(&header), &payload, now);
        // Without the secret's signature nothing can pass.
        prop_assert!(result.is_err(), "{header:?} verified");
    }

    #[test]
    fn a_built_header_parses_back_to_its_parts(
        t in timestamp(),
        signatures in vec(any::<[u8; 32]>(), 1..5),
        others in vec("v0=[0-9a-f]{1,64}", 0..3),
        spaced in any::<bool>(),
    ) {
        let pad = if spaced { " " } else { "" };
        let mut pairs = vec![format!("{pad}t={t}{pad}")];
        pairs.extend(signatures.iter().map(|s| format!("{pad}v1={}{pad}", hex::encode(s))));
        pairs.extend(others);
        let text = pairs.join(",");

        let header = Header::parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(header.timestamp, t);
        prop_assert_eq!(header.timestamp_raw, t.to_string());
        prop_assert_eq!(header.signatures, signatures);
    }

    #[test]
    fn a_signed_payload_verifies_and_any_change_fails(
        secret in secret(),
        other_secret in secret(),
        payload in vec(any::<u8>(), 0..256),
        other_payload in vec(any::<u8>(), 0..256),
        t in timestamp(),
        other_t in timestamp(),
        zeros in 1usize..3,
    ) {
        let header = sign(&secret, &payload, t);
        prop_assert!(verifier(&secret).verify(Some(&header), &payload, t).is_ok());

        let code = |result: Result<()>| result.err().map_or("ok", |e| e.code());
        if other_payload != payload {
            prop_assert_eq!(
                code(verifier(&secret).verify(Some(&header), &other_payload, t)),
                "signature_mismatch"
            );
        }
        if other_secret != secret {
            prop_assert_eq!(
                code(verifier(&other_secret).verify(Some(&header), &payload, t)),
                "signature_mismatch"
            );
        }
        let mac = header.split_once(",v1=").map(|(_, mac)| mac.to_owned()).unwrap_or_default();
        if other_t != t {
            let moved = format!("t={other_t},v1={mac}");
            prop_assert_eq!(
                code(verifier(&secret).verify(Some(&moved), &payload, other_t)),
                "signature_mismatch"
            );
        }
        // The same number written otherwise is other signed text.
        let padded = format!("t={}{t},v1={mac}", "0".repeat(zeros));
        prop_assert_eq!(
            code(verifier(&secret).verify(Some(&padded), &payload, t)),
            "signature_mismatch"
        );
    }

    #[test]
    fn an_authentic_signature_passes_exactly_within_the_tolerance(
        t in timestamp(),
        offset in -1_000i64..1_000,
    ) {
        let header = sign("whsec_test", b"{}", t);
        let now = t.saturating_add(offset);
        let result = verifier("whsec_test").verify(Some(&header), b"{}", now);
        if now.abs_diff(t) <= TOLERANCE.as_secs() {
            prop_assert!(result.is_ok(), "{result:?}");
        } else {
            let timestamp_out_of_tolerance =
                matches!(result, Err(SignatureError::TimestampOutOfTolerance { .. }));
            prop_assert!(timestamp_out_of_tolerance, "{result:?}");
        }
    }
}
