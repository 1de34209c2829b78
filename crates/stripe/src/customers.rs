//! The external key → Stripe customer id mapping. Stripe chooses customer ids, so the mapping is kept on
//! our side, in the state table, and written so that a redelivered, crashed or replayed file never creates a
//! second customer:
//!
//! 1. a mapping already holding a customer id: the customer is updated;
//! 2. otherwise the mapping is *claimed* (a conditional put that succeeds once), recording the idempotency
//!    key of the create, and the customer is created under that key;
//! 3. the customer id is recorded in the mapping.
//!
//! A claim found already there ([`Mapping::Pending`]: a crash between the create and step 3, or a
//! concurrent worker) may have created the customer: the sink looks for it by its external key in its
//! metadata (Stripe's search), and creates it under the *claim's* key only when none is found, so Stripe
//! answers the same customer instead of a second one (the key covers the search index's delay, the search
//! covers the key's 24-hour expiry).
//!
//! Items: `pk` = `STRIPE_CUSTOMER#<connector id>`, `sk` = the external key; `customer_id` once known,
//! `idempotency_key` from the claim. A connector's mappings survive its files being renamed or replayed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::error::StripeError;

/// What the mapping of one external key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// The customer exists.
    Known {
        /// Stripe's id (`cus_…`).
        customer_id: String,
    },
    /// Claimed by this call: nobody has created the customer; create it under this idempotency key.
    Claimed {
        /// The create's `Idempotency-Key`.
        idempotency_key: String,
    },
    /// Claimed earlier, by a create that may have reached Stripe without being recorded.
    Pending {
        /// The earlier create's `Idempotency-Key`.
        idempotency_key: String,
    },
}

/// Where the mappings are kept.
#[async_trait]
pub trait CustomerIds: Send + Sync + std::fmt::Debug {
    /// The mapping of `external_key`, claiming it for a create under `idempotency_key` when there is none.
    async fn claim(
        &self,
        connector_id: &str,
        external_key: &str,
        idempotency_key: &str,
    ) -> Result<Mapping, StripeError>;

    /// Records the customer created for `external_key`.
    async fn record(
        &self,
        connector_id: &str,
        external_key: &str,
        customer_id: &str,
    ) -> Result<(), StripeError>;
}

/// Mappings in memory (tests, and the fake server demo).
#[derive(Debug, Default)]
pub struct MemoryCustomerIds {
    map: Mutex<HashMap<(String, String), Mapping>>,
}

impl MemoryCustomerIds {
    /// No mapping.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every mapping of `connector_id`, by external key.
    pub fn of(&self, connector_id: &str) -> HashMap<String, Mapping> {
        self.lock()
            .iter()
            .filter(|((c, _), _)| c == connector_id)
            .map(|((_, k), m)| (k.clone(), m.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Mapping>> {
        // The map holds no invariant a panic could break.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl CustomerIds for MemoryCustomerIds {
    async fn claim(
        &self,
        connector_id: &str,
        external_key: &str,
        idempotency_key: &str,
    ) -> Result<Mapping, StripeError> {
        let mut map = self.lock();
        let key = (connector_id.to_owned(), external_key.to_owned());
        Ok(match map.get(&key) {
            Some(Mapping::Known { customer_id }) => Mapping::Known {
                customer_id: customer_id.clone(),
            },
            Some(Mapping::Claimed { idempotency_key } | Mapping::Pending { idempotency_key }) => {
                Mapping::Pending {
                    idempotency_key: idempotency_key.clone(),
                }
            }
            None => {
                let claimed = Mapping::Claimed {
                    idempotency_key: idempotency_key.to_owned(),
                };
                map.insert(key, claimed.clone());
                claimed
            }
        })
    }

    async fn record(
        &self,
        connector_id: &str,
        external_key: &str,
        customer_id: &str,
    ) -> Result<(), StripeError> {
        self.lock().insert(
            (connector_id.to_owned(), external_key.to_owned()),
            Mapping::Known {
                customer_id: customer_id.to_owned(),
            },
        );
        Ok(())
    }
}

/// Mappings in the state table (DynamoDB), see the module docs.
#[derive(Debug, Clone)]
pub struct DynamoCustomerIds {
    client: Client,
    table: String,
}

impl DynamoCustomerIds {
    /// Mappings in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(connector_id: &str, external_key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                "pk".to_owned(),
                AttributeValue::S(format!("STRIPE_CUSTOMER#{connector_id}")),
            ),
            ("sk".to_owned(), AttributeValue::S(external_key.to_owned())),
        ])
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> StripeError {
        StripeError::Mapping(format!("{what} in table {}: {e}", self.table))
    }
}

/// The mapping an item holds; a claim found is someone else's ([`Mapping::Pending`]).
fn mapping_of(item: &HashMap<String, AttributeValue>) -> Option<Mapping> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    if let Some(customer_id) = text("customer_id") {
        return Some(Mapping::Known { customer_id });
    }
    text("idempotency_key").map(|idempotency_key| Mapping::Pending { idempotency_key })
}

#[async_trait]
impl CustomerIds for DynamoCustomerIds {
    async fn claim(
        &self,
        connector_id: &str,
        external_key: &str,
        idempotency_key: &str,
    ) -> Result<Mapping, StripeError> {
        let key = Self::key(connector_id, external_key);
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("read a customer mapping", e.into_service_error()))?;
        if let Some(mapping) = got.item().and_then(mapping_of) {
            return Ok(mapping);
        }
        let mut item = key.clone();
        item.insert(
            "idempotency_key".to_owned(),
            AttributeValue::S(idempotency_key.to_owned()),
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Mapping::Claimed {
                idempotency_key: idempotency_key.to_owned(),
            }),
            Err(e) => {
                let e = e.into_service_error();
                if !e.is_conditional_check_failed_exception() {
                    return Err(self.failed("claim a customer mapping", e));
                }
                // Claimed by someone else since the read: theirs is the one.
                let got = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| self.failed("read a customer mapping", e.into_service_error()))?;
                got.item()
                    .and_then(mapping_of)
                    .ok_or_else(|| self.failed("claim a customer mapping", "the claim vanished"))
            }
        }
    }

    async fn record(
        &self,
        connector_id: &str,
        external_key: &str,
        customer_id: &str,
    ) -> Result<(), StripeError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(connector_id, external_key)))
            .update_expression("SET customer_id = :id")
            .expression_attribute_values(":id", AttributeValue::S(customer_id.to_owned()))
            .send()
            .await
            .map_err(|e| self.failed("record a customer mapping", e.into_service_error()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_claim_wins_later_ones_see_it_pending_and_a_record_replaces_it() {
        let ids = MemoryCustomerIds::new();
        let first = ids.claim("c", "k1", "key-a").await;
        let again = ids.claim("c", "k1", "key-b").await;
        assert_eq!(
            first.ok(),
            Some(Mapping::Claimed {
                idempotency_key: "key-a".into()
            })
        );
        assert_eq!(
            again.ok(),
            Some(Mapping::Pending {
                idempotency_key: "key-a".into()
            })
        );
        assert!(ids.record("c", "k1", "cus_1").await.is_ok());
        assert_eq!(
            ids.claim("c", "k1", "key-c").await.ok(),
            Some(Mapping::Known {
                customer_id: "cus_1".into()
            })
        );
        assert_eq!(ids.of("other").len(), 0);
    }
}
