//! Typed ids, so a run id cannot be passed where an event id is expected. Each is a
//! string newtype that spells itself as it is stored, in the database and in JSON:
//! `run_…` and `ev_…` carry their prefix, a function id is the slug its author chose.
//! Parsing checks the form and refuses anything else with an [`IdError`].

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A new sortable id with a readable prefix: `run_0192…` (a UUID v7 in simple form).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Text that is not an id of the kind expected; holds what was expected and the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not {expected}")]
pub struct IdError {
    /// What an id of this kind looks like, e.g. `a run id (run_…)`.
    pub expected: &'static str,
    /// The text given.
    pub given: String,
}

/// Declares a string id newtype: `as_str`, `Display`, `FromStr`, `TryFrom<&str>` and
/// `TryFrom<String>` (checked by `$valid`), `AsRef<str>`, `Borrow<str>`, and serde as the
/// plain string, refusing text that does not parse.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $expected:literal, $valid:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id as text, as it is stored.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(s: String) -> Result<Self, IdError> {
                #[allow(clippy::redundant_closure_call)]
                if ($valid)(s.as_str()) {
                    Ok($name(s))
                } else {
                    Err(IdError { expected: $expected, given: s })
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;

            fn try_from(s: &str) -> Result<Self, IdError> {
                $name::try_from(s.to_owned())
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::try_from(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Declares an id newtype whose text is `<prefix>_<something>`, with `PREFIX` and `new()`
/// making a fresh one.
macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $expected:literal) => {
        id_type!($(#[$meta])* $name, $expected, |s: &str| {
            s.strip_prefix($prefix)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|rest| !rest.is_empty())
        });

        impl $name {
            /// The prefix every id of this kind starts with, before its `_`.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: the prefix, `_`, and a UUID v7, so ids sort by creation time.
            #[allow(clippy::new_without_default)]
            pub fn new() -> $name {
                $name(new_id($prefix))
            }
        }
    };
}

prefixed_id!(
    /// paysteps' id for a run, `run_…`.
    RunId,
    "run",
    "a run id (run_…)"
);

prefixed_id!(
    /// paysteps' id for a stored event, `ev_…` (not the sender's own id, such as
    /// Stripe's `evt_…`, which is kept beside it as the external id).
    EventId,
    "ev",
    "an event id (ev_…)"
);

id_type!(
    /// A function's id: the slug its author chose (`stripe-checkout-completed`), unique
    /// in the engine; a failure handler's is `<id>.on_failure`. Never empty.
    FunctionId,
    "a function id (a non-empty name)",
    |s: &str| !s.is_empty()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ids_round_trip_and_refuse_other_prefixes() {
        let run = RunId::new();
        assert!(run.as_str().starts_with("run_"));
        assert_eq!(run.as_str().len(), "run_".len() + 32);
        assert_eq!(run.to_string().parse::<RunId>().unwrap(), run);
        assert_eq!(RunId::try_from(run.to_string()).unwrap(), run);
        assert_eq!(RunId::try_from("run_1").unwrap().as_ref(), "run_1");
        assert!(EventId::new().as_str().starts_with("ev_"));
        assert_eq!(RunId::PREFIX, "run");
        assert_eq!(EventId::PREFIX, "ev");

        for bad in ["", "run", "run_", "ev_1", "runx_1", "RUN_1", " run_1"] {
            let err = bad.parse::<RunId>().unwrap_err();
            assert_eq!(err.given, bad);
        }
        // Stripe's own event ids are not paysteps' event ids.
        assert!("evt_1NG8Du2eZvKYlo2C".parse::<EventId>().is_err());
        assert!(EventId::try_from(RunId::new().to_string()).is_err());
    }

    #[test]
    fn function_ids_are_any_non_empty_slug() {
        let id: FunctionId = "stripe-checkout-completed".parse().unwrap();
        assert_eq!(id.as_str(), "stripe-checkout-completed");
        assert_eq!(
            FunctionId::try_from("journal-retention.on_failure").unwrap(),
            "journal-retention.on_failure"
        );
        assert!(FunctionId::try_from("").is_err());
    }

    #[test]
    fn ids_serialize_as_their_plain_text() {
        let run: RunId = "run_0192abc".parse().unwrap();
        let json = serde_json::to_string(&run).unwrap();
        assert_eq!(json, "\"run_0192abc\"");
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), run);
        assert!(serde_json::from_str::<RunId>("\"ev_1\"").is_err());
        assert!(serde_json::from_str::<EventId>("\"ev_1\"").is_ok());
        assert!(serde_json::from_str::<FunctionId>("\"\"").is_err());
        assert_eq!(
            serde_json::to_string(&FunctionId::try_from("f").unwrap()).unwrap(),
            "\"f\""
        );
    }
}
