//! Small tables beside the journal: each cron function's last tick, and settings.

use crate::args;
use crate::ids::FunctionId;
use crate::store::{Result, Store, StoreTx};

impl StoreTx {
    /// Records when a cron schedule starts, unless it already has a last tick.
    pub(crate) async fn start_cron(&mut self, function_id: &FunctionId, now: i64) -> Result<()> {
        self.execute(
            "INSERT INTO cron_state (function_id, last_tick) VALUES ($1, $2) \
             ON CONFLICT (function_id) DO NOTHING",
            args![function_id, now],
        )
        .await?;
        Ok(())
    }

    /// Moves a cron function's last tick forward (never back).
    pub(crate) async fn advance_cron(&mut self, function_id: &FunctionId, tick: i64) -> Result<()> {
        self.execute(
            "INSERT INTO cron_state (function_id, last_tick) VALUES ($1, $2) \
             ON CONFLICT (function_id) DO UPDATE SET last_tick = excluded.last_tick \
             WHERE excluded.last_tick > cron_state.last_tick",
            args![function_id, tick],
        )
        .await?;
        Ok(())
    }

    /// Stores `value` under `key` in the settings table, replacing any previous value.
    #[doc(hidden)]
    pub async fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            args![key, value],
        )
        .await?;
        Ok(())
    }

    /// Stores `value` unless the key is set, and returns what is stored.
    pub(crate) async fn setting_or_insert(&mut self, key: &str, value: &str) -> Result<String> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            args![key, value],
        )
        .await?;
        let (stored,): (String,) = self
            .fetch_one("SELECT value FROM settings WHERE key = $1", args![key])
            .await?;
        Ok(stored)
    }
}

impl Store {
    /// The last tick a cron function fired (milliseconds since the Unix epoch); `None`
    /// before its first.
    pub(crate) async fn cron_last_tick(&self, function_id: &FunctionId) -> Result<Option<i64>> {
        let row: Option<(i64,)> = self
            .fetch_optional(
                "SELECT last_tick FROM cron_state WHERE function_id = $1",
                args![function_id],
            )
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// The value stored under `key` in the settings table, if any.
    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = self
            .fetch_optional("SELECT value FROM settings WHERE key = $1", args![key])
            .await?;
        Ok(row.map(|r| r.0))
    }
}
