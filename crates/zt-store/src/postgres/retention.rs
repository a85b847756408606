//! Retention of history: findings resolved and apps removed before a cut-off, deleted company
//! by company in small transactions, so that it never holds up ingest.

use chrono::{DateTime, Utc};

use super::queue::PURGE_BATCH;
use super::PgStore;
use crate::Result;

impl PgStore {
    pub(crate) async fn purge_history_impl(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut purged = 0u64;
        for company in self.company_ids().await? {
            for sql in [
                "DELETE FROM findings WHERE company_id = $1 AND (agent_id, software_key, vuln_id) IN \
                 (SELECT agent_id, software_key, vuln_id FROM findings WHERE company_id = $1 \
                  AND resolved_at < $2 LIMIT $3)",
                "DELETE FROM apps WHERE company_id = $1 AND (agent_id, software_key, arch) IN \
                 (SELECT agent_id, software_key, arch FROM apps WHERE company_id = $1 \
                  AND removed_at < $2 LIMIT $3)",
            ] {
                loop {
                    let started = std::time::Instant::now();
                    let mut tx = self.begin_for_company(company).await?;
                    let n = sqlx::query(sql)
                        .bind(company)
                        .bind(before)
                        .bind(PURGE_BATCH)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    crate::common::janitor_timing("purge history", started, n);
                    purged += n;
                    if n < PURGE_BATCH as u64 {
                        break;
                    }
                }
            }
        }
        Ok(purged)
    }
}
