//! Settings shared by the commands, and the secret type that keeps them out of logs.

use std::fmt;

/// A value that must never be printed by accident: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the code that must use it (signing, comparing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Splits a comma-separated secret list (several secrets while one is being rolled).
pub fn parse_secrets(value: &str) -> Vec<Secret> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_split_and_redacted() {
        let secrets = parse_secrets(" whsec_a , whsec_b,,");
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[1].expose(), "whsec_b");
        assert_eq!(
            format!("{:?} {}", secrets[0], secrets[0]),
            "[redacted] [redacted]"
        );
    }
}
