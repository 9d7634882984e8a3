//! Settings shared by the commands, and the secret type that keeps them out of logs.

use std::fmt;
use std::time::Duration;

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

/// Everything a server process needs, validated per command.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on, `host:port`.
    pub bind: String,
    /// Database URL: `postgres://…`, or an SQLite file.
    pub database_url: String,
    /// Stripe webhook signing secrets (`whsec_…`); several while one is being rolled.
    pub webhook_secrets: Vec<Secret>,
    /// Largest accepted gap between a signature's timestamp and now.
    pub tolerance: Duration,
    /// Largest webhook body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Runs executed at once by this process.
    pub workers: usize,
    /// How long a worker's claim on a run lasts without renewal.
    pub lease: Duration,
    /// Credential for the dashboard and `/api/v1`; `None` leaves them open (loopback only).
    pub dashboard_token: Option<Secret>,
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
