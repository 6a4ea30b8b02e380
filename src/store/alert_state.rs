//! `ops_alert_state`: what each alert channel last delivered, per check.

use rusqlite::params;

use super::Store;

/// One delivered state: `(check id, state, severity, notified_at)`.
pub type DeliveredRow = (String, String, String, String);

impl Store {
    /// What `channel` last delivered for each check.
    pub fn delivered(&self, channel: &str) -> rusqlite::Result<Vec<DeliveredRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT check_id, state, severity, notified_at FROM ops_alert_state WHERE channel = ?1",
        )?;
        let rows = stmt.query_map(params![channel], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect()
    }

    /// `channel` delivered `state` of `check` at `at`.
    pub fn remember_delivery(
        &self,
        channel: &str,
        check: &str,
        state: &str,
        severity: &str,
        at: &str,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO ops_alert_state (channel, check_id, state, severity, notified_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (channel, check_id) DO UPDATE SET state = ?3, severity = ?4, notified_at = ?5",
            params![channel, check, state, severity, at],
        )?;
        Ok(())
    }

    /// `channel` delivered the recovery of `check`: nothing is outstanding for it.
    pub fn forget_delivery(&self, channel: &str, check: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "DELETE FROM ops_alert_state WHERE channel = ?1 AND check_id = ?2",
            params![channel, check],
        )?;
        Ok(())
    }

    /// Replaces the remembered channels (`(plan, name, spec)`) when they changed.
    pub fn remember_channels(&self, channels: &[(String, String, String)]) -> rusqlite::Result<()> {
        if self.remembered_channels()? == channels {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM ops_alert_channels", [])?;
        for (plan, name, spec) in channels {
            tx.execute(
                "INSERT INTO ops_alert_channels (plan, name, spec) VALUES (?1, ?2, ?3)",
                params![plan, name, spec],
            )?;
        }
        tx.commit()
    }

    /// The channels of the plans that loaded last, `(plan, name, spec)` in order.
    pub fn remembered_channels(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT plan, name, spec FROM ops_alert_channels ORDER BY plan, name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }
}
