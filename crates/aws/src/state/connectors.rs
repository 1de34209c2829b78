//! [`ConnectorStore`] on the state table: the connector item, its name reservation and the listing index,
//! kept together by transactions; the lister's watermark only moves forward.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use s3_importer_core::sync::model::{sync_lease_name, Connector, Reconcile};
use s3_importer_core::sync::ports::{ConnectorStore, StateError};

use super::codec::{
    attr_str, connector_pk, index_key, json_av, key, lease_key, meta_key, millis_n, n, name_key,
    owned_partitions, s, to_item, CONNECTORS_PK, CONNECTOR_MILLIS, INTERNAL, META,
};
use super::conditional::{WriteIf, Written};
use super::expr::Expr;
use super::{other, transaction_error, DynamoStateStore, Item, PK, SK};

impl DynamoStateStore {
    pub(super) async fn get_connector_item(&self, id: &str) -> Result<Option<Item>, StateError> {
        self.get_item(meta_key(id), &self.ctx(format!("read connector {id}")))
            .await
    }
}

#[async_trait]
impl ConnectorStore for DynamoStateStore {
    async fn create_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "create connector {} ({:?})",
            connector.id, connector.name
        ));
        let mut meta =
            to_item(connector, &CONNECTOR_MILLIS).map_err(|e| other(context.clone(), e))?;
        meta.extend(meta_key(&connector.id));
        let mut name = name_key(&connector.name);
        name.insert("connector_id".into(), s(&connector.id));
        let mut index = index_key(&connector.id);
        index.insert("connector_id".into(), s(&connector.id));
        let absent = Some("attribute_not_exists(pk)");
        // One transaction: the name is reserved if and only if the connector exists.
        let items = vec![
            self.put(meta, absent, &context)?,
            self.put(name, absent, &context)?,
            self.put(index, absent, &context)?,
        ];
        self.transact(items).await.map_err(|e| {
            transaction_error(e, context.clone(), |failed| {
                Some(if failed.contains(&1) {
                    StateError::NameTaken {
                        name: connector.name.clone(),
                    }
                } else {
                    StateError::Conflict {
                        what: format!("connector {}", connector.id),
                    }
                })
            })
        })
    }

    async fn get_connector(&self, id: &str) -> Result<Option<Connector>, StateError> {
        self.get_connector_item(id)
            .await?
            .map(|item| self.parse_connector(&item))
            .transpose()
    }

    async fn find_connector_by_name(&self, name: &str) -> Result<Option<Connector>, StateError> {
        let item = self
            .get_item(
                name_key(name),
                &self.ctx(format!("find connector named {name:?}")),
            )
            .await?;
        match item.as_ref().and_then(|i| attr_str(i, "connector_id")) {
            Some(id) => self.get_connector(id).await,
            None => Ok(None),
        }
    }

    async fn list_connectors(&self) -> Result<Vec<Connector>, StateError> {
        let context = self.ctx("list connectors");
        let index = self
            .query(CONNECTORS_PK.to_owned(), "", None, false, None, &context)
            .await?;
        let keys = index
            .iter()
            .filter_map(|i| attr_str(i, SK))
            .map(meta_key)
            .collect();
        let mut connectors: Vec<Connector> = self
            .batch_get(keys, &context)
            .await?
            .iter()
            .map(|item| self.parse_connector(item))
            .collect::<Result<_, _>>()?;
        connectors.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(connectors)
    }

    async fn update_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let id = &connector.id;
        let context = self.ctx(format!("update connector {id}"));
        let Some(old) = self.get_connector_item(id).await? else {
            return Err(StateError::NotFound {
                what: format!("connector {id}"),
            });
        };
        let old_name = attr_str(&old, "name").unwrap_or_default().to_owned();
        let new = to_item(connector, &CONNECTOR_MILLIS).map_err(|e| other(context.clone(), e))?;
        // The watermark, last sync and reconciliation belong to the lister; the id is the key.
        let untouched = ["id", "watermark", "last_sync", "reconcile", PK, SK];
        let mut expr = Expr::default();
        let mut sets = Vec::new();
        for (i, (attr, value)) in new
            .into_iter()
            .filter(|(a, _)| !untouched.contains(&a.as_str()))
            .enumerate()
        {
            let name = expr.name(&attr);
            let value = expr.value(&format!("v{i}"), value);
            sets.push(format!("{name} = {value}"));
        }
        // Attributes the new settings no longer have (an optional field set to None) are removed.
        let stale: Vec<String> = old
            .keys()
            .filter(|a| !untouched.contains(&a.as_str()) && !INTERNAL.contains(&a.as_str()))
            .filter(|a| !expr.names_attribute(a))
            .cloned()
            .collect();
        let removes: Vec<String> = stale.iter().map(|a| expr.name(a)).collect();
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        // Optimistic: the name read above must still be the stored one, or the name index would drift.
        let name_attr = expr.name("name");
        let old_name_value = expr.value("old_name", s(&old_name));
        let condition = format!("attribute_exists(pk) AND {name_attr} = {old_name_value}");
        let conflict = || format!("connector {id}");

        if old_name == connector.name {
            let write = WriteIf::update(meta_key(id), update, condition, expr);
            return self.write_if(write, &context).await?.or_conflict(conflict);
        }

        // A rename: update the connector, free the old name and take the new one, atomically.
        let meta_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(|e| other(context.clone(), e))?;
        let free_old = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(name_key(&old_name)))
            .condition_expression("attribute_not_exists(pk) OR connector_id = :id")
            .expression_attribute_values(":id", s(id))
            .build()
            .map_err(|e| other(context.clone(), e))?;
        let mut new_name = name_key(&connector.name);
        new_name.insert("connector_id".into(), s(id));
        let items = vec![
            TransactWriteItem::builder().update(meta_update).build(),
            TransactWriteItem::builder().delete(free_old).build(),
            self.put(new_name, Some("attribute_not_exists(pk)"), &context)?,
        ];
        self.transact(items).await.map_err(|e| {
            transaction_error(e, context.clone(), |failed| {
                Some(if failed.contains(&2) {
                    StateError::NameTaken {
                        name: connector.name.clone(),
                    }
                } else {
                    StateError::Conflict { what: conflict() }
                })
            })
        })
    }

    async fn delete_connector(&self, id: &str) -> Result<u64, StateError> {
        let context = self.ctx(format!("delete connector {id}"));
        let meta = self.get_connector_item(id).await?;
        let mut items = self
            .query(connector_pk(id), "", None, false, None, &context)
            .await?;
        for pk in owned_partitions(id) {
            items.extend(self.query(pk, "", None, false, None, &context).await?);
        }
        let count = items.len() as u64;
        // META goes last: until it is gone, a retry after a failure here still knows the name to free.
        let mut keys: Vec<Item> = items
            .iter()
            .filter(|item| attr_str(item, SK) != Some(META))
            .filter_map(|item| Some(key(attr_str(item, PK)?.to_owned(), attr_str(item, SK)?)))
            .collect();
        keys.push(index_key(id));
        keys.push(lease_key(&sync_lease_name(id)));
        self.batch_delete(keys, &context).await?;
        if let Some(name) = meta.as_ref().and_then(|m| attr_str(m, "name")) {
            let mut expr = Expr::default();
            let owner = expr.name("connector_id");
            let id_value = expr.value("id", s(id));
            // Only our own reservation: after a rename race the name may belong to another connector,
            // and then a failed condition leaves it to its owner.
            let write = WriteIf::delete(name_key(name), format!("{owner} = {id_value}"), expr);
            self.write_if(write, &context).await?;
        }
        if meta.is_some() {
            self.batch_delete(vec![meta_key(id)], &context).await?;
        }
        Ok(count)
    }

    async fn advance_watermark(&self, id: &str, to: DateTime<Utc>) -> Result<(), StateError> {
        let context = self.ctx(format!("advance the watermark of connector {id}"));
        let mut expr = Expr::default();
        let watermark = expr.name("watermark");
        let to_value = expr.value("to", n(millis_n(to)));
        let update = format!("SET {watermark} = {to_value}");
        // Monotonic: two listers (or a retried one) never move it back.
        let condition = format!(
            "attribute_exists(pk) AND (attribute_not_exists({watermark}) OR {watermark} < {to_value})"
        );
        let write = WriteIf::update(meta_key(id), update, condition, expr).old_on_failure();
        let Written::ConditionFailed(old) = self.write_if(write, &context).await? else {
            return Ok(());
        };
        // The watermark is already there or beyond (nothing to do), or there is no connector.
        let exists = match old {
            Some(_) => true,
            None => self.get_connector_item(id).await?.is_some(),
        };
        if exists {
            Ok(())
        } else {
            Err(StateError::NotFound {
                what: format!("connector {id}"),
            })
        }
    }

    async fn save_reconcile(&self, id: &str, reconcile: &Reconcile) -> Result<(), StateError> {
        let context = self.ctx(format!("save the reconciliation of connector {id}"));
        let mut expr = Expr::default();
        let attr = expr.name("reconcile");
        let value = expr.value(
            "reconcile",
            json_av(reconcile).map_err(|e| other(context.clone(), e))?,
        );
        let write = WriteIf::update(
            meta_key(id),
            format!("SET {attr} = {value}"),
            "attribute_exists(pk)",
            expr,
        );
        if self.write_if(write, &context).await?.is_done() {
            Ok(())
        } else {
            Err(StateError::NotFound {
                what: format!("connector {id}"),
            })
        }
    }
}
