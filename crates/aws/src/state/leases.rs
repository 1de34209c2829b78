//! [`LeaseStore`] on the state table: a named lease is one item, taken by a conditional put when it is
//! free, ours or expired, and swept by the table's TTL when abandoned.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use s3_importer_core::sync::ports::{LeaseStore, StateError};

use super::codec::{lease_key, millis_n, n, s};
use super::conditional::WriteIf;
use super::expr::Expr;
use super::{DynamoStateStore, TTL_ATTRIBUTE};

#[async_trait]
impl LeaseStore for DynamoStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StateError> {
        let context = self.ctx(format!("acquire lease {name:?} for {owner}"));
        let until = now + ttl;
        let mut item = lease_key(name);
        item.insert("owner".into(), s(owner));
        item.insert("lease_until".into(), n(millis_n(until)));
        // DynamoDB's TTL sweeps abandoned leases (a day after expiry: TTL deletion is not prompt).
        item.insert(
            TTL_ATTRIBUTE.into(),
            n((until + chrono::Duration::days(1)).timestamp()),
        );
        let mut expr = Expr::default();
        let owner_name = expr.name("owner");
        let until_name = expr.name("lease_until");
        let owner_value = expr.value("owner", s(owner));
        let now_value = expr.value("now", n(millis_n(now)));
        let condition = format!(
            "attribute_not_exists(pk) OR {owner_name} = {owner_value} OR {until_name} < {now_value}"
        );
        // Held by someone else and not expired: not ours (a failed condition).
        let written = self
            .write_if(WriteIf::put(item, condition, expr), &context)
            .await?;
        Ok(written.is_done())
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        let context = self.ctx(format!("release lease {name:?} for {owner}"));
        let mut expr = Expr::default();
        let owner_name = expr.name("owner");
        let owner_value = expr.value("owner", s(owner));
        let condition = format!("{owner_name} = {owner_value}");
        // Expired and taken over (or never held): nothing of ours to release.
        self.write_if(WriteIf::delete(lease_key(name), condition, expr), &context)
            .await?;
        Ok(())
    }
}
