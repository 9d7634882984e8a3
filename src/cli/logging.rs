//! Where logs go and in what shape: stderr, filtered by `RUST_LOG`, as text for people
//! or as one JSON object per line for log shippers (`PAYSTEPS_LOG_FORMAT`).

use std::env::{self, VarError};
use std::io::{self, IsTerminal};
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// The variable that picks the [`LogFormat`].
pub const LOG_FORMAT_VAR: &str = "PAYSTEPS_LOG_FORMAT";

/// The filter used when `RUST_LOG` is unset or does not parse.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's own fields,
    /// `target`, and the spans it happened in.
    Json,
}

/// Why `PAYSTEPS_LOG_FORMAT` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{LOG_FORMAT_VAR} is {0:?}; expected `text` or `json`")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownLogFormat(value.to_owned())),
        }
    }
}

impl LogFormat {
    /// The format `PAYSTEPS_LOG_FORMAT` names; unset or empty is [`LogFormat::Text`].
    pub fn from_env() -> Result<Self, UnknownLogFormat> {
        match env::var(LOG_FORMAT_VAR) {
            Ok(value) if value.trim().is_empty() => Ok(LogFormat::Text),
            Ok(value) => value.parse(),
            Err(VarError::NotPresent) => Ok(LogFormat::Text),
            Err(VarError::NotUnicode(value)) => {
                Err(UnknownLogFormat(value.to_string_lossy().into_owned()))
            }
        }
    }
}

/// Reads `.env` when there is one and logs to stderr, filtered by `RUST_LOG` (default
/// `info`, with sqlx's statement logs at `warn`), in the format `PAYSTEPS_LOG_FORMAT`
/// names: what the binary does before parsing its command line, for programs built on
/// [`super::run_with`]. Fails on an unknown format, before anything is logged.
pub fn init_logging() -> Result<(), UnknownLogFormat> {
    dotenvy::dotenv().ok();
    let format = LogFormat::from_env()?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(colour()).init(),
        // The event's fields sit beside `level` at the top, where shippers look for
        // `message`; colour codes would end up inside the JSON strings.
        LogFormat::Json => logs.json().flatten_event(true).with_ansi(false).init(),
    }
    Ok(())
}

/// Colour only for a person watching a terminal, and not when `NO_COLOR` asks for none:
/// escape codes in a file or a pipe are noise.
fn colour() -> bool {
    io::stderr().is_terminal() && env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_named_text_or_json() {
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert_eq!(" JSON ".parse(), Ok(LogFormat::Json));
        let err = "xml".parse::<LogFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "PAYSTEPS_LOG_FORMAT is \"xml\"; expected `text` or `json`"
        );
        assert!("".parse::<LogFormat>().is_err());
    }
}
