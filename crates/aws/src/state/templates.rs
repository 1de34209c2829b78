//! [`TemplateStore`] on the state table: numbered, immutable versions of each template, the next number
//! taken by a conditional put, and a listing index.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use s3_importer_core::sync::ports::{StateError, StoredTemplate, TemplateStore};
use s3_importer_core::template::Template;

use super::codec::{
    attr_str, key, n, s, template_key, template_pk, time_s, TEMPLATES_PK, VERSION_PREFIX,
};
use super::conditional::{WriteIf, Written};
use super::expr::Expr;
use super::{other, sdk_error, DynamoStateStore, Item, SK};

/// Rounds of optimistic retries when two writers race for the next template version.
const TEMPLATE_VERSION_ATTEMPTS: u32 = 10;

impl DynamoStateStore {
    async fn latest_template_item(
        &self,
        id: &str,
        context: &str,
    ) -> Result<Option<Item>, StateError> {
        let mut items = self
            .query(
                template_pk(id),
                VERSION_PREFIX,
                None,
                true,
                Some(1),
                context,
            )
            .await?;
        Ok(items.pop())
    }
}

#[async_trait]
impl TemplateStore for DynamoStateStore {
    async fn put_template(
        &self,
        id: &str,
        source: &str,
        template: &Template,
        now: DateTime<Utc>,
    ) -> Result<u32, StateError> {
        let context = self.ctx(format!("store template {id:?}"));
        let template_json =
            serde_json::to_string(template).map_err(|e| other(context.clone(), e))?;
        // The listing index first (idempotent): a version is never stored without being listable.
        let mut index = key(TEMPLATES_PK.to_owned(), id);
        index.insert("id".into(), s(id));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(index))
            .send()
            .await
            .map_err(|e| sdk_error(e, context.clone()))?;
        for _ in 0..TEMPLATE_VERSION_ATTEMPTS {
            let latest = match self.latest_template_item(id, &context).await? {
                Some(item) => self.parse_template(&item)?.version,
                None => 0,
            };
            let version = latest + 1;
            let mut item = template_key(id, version);
            item.insert("id".into(), s(id));
            item.insert("version".into(), n(version));
            item.insert("source".into(), s(source));
            item.insert("template".into(), s(template_json.clone()));
            item.insert(
                "created_at".into(),
                time_s(now).map_err(|e| other(context.clone(), e))?,
            );
            let write = WriteIf::put(item, "attribute_not_exists(pk)", Expr::default());
            match self.write_if(write, &context).await? {
                Written::Done(_) => return Ok(version),
                // Another writer took this version number: read the latest again.
                Written::ConditionFailed(_) => continue,
            }
        }
        Err(StateError::Conflict {
            what: format!("template {id:?} (too many concurrent versions)"),
        })
    }

    async fn get_template(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StateError> {
        let context = self.ctx(format!("read template {id:?}"));
        let item = match version {
            Some(v) => self.get_item(template_key(id, v), &context).await?,
            None => self.latest_template_item(id, &context).await?,
        };
        item.map(|item| self.parse_template(&item)).transpose()
    }

    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StateError> {
        let context = self.ctx("list templates");
        let index = self
            .query(TEMPLATES_PK.to_owned(), "", None, false, None, &context)
            .await?;
        let mut templates = Vec::with_capacity(index.len());
        for id in index.iter().filter_map(|i| attr_str(i, SK)) {
            if let Some(item) = self.latest_template_item(id, &context).await? {
                templates.push(self.parse_template(&item)?);
            }
        }
        Ok(templates)
    }
}
