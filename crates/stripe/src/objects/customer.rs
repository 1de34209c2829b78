//! A customer row: Stripe chooses customer ids, so the row's external key is mapped to one in the state
//! table (see [`crate::customers`] for the claim protocol), and a claim left behind by a crash is resolved
//! by Stripe's search before anything is created again.

use s3_importer_core::sink::SinkError;
use s3_importer_core::{ErrorCode, RowError};
use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::{field, id_of, metadata, missing, refused, update, RowOutcome, RowSource};
use crate::api::Reply;
use crate::customers::Mapping;
use crate::error::StripeError;
use crate::form::{segment, Form};
use crate::Stripe;

/// The metadata key holding a customer's external key (how a customer is found again).
pub const EXTERNAL_KEY_METADATA: &str = "s3i_external_key";

const CUSTOMER_FIELDS: [&str; 11] = [
    "external_key",
    "email",
    "name",
    "phone",
    "description",
    "address_line1",
    "address_line2",
    "address_city",
    "address_state",
    "address_postal_code",
    "address_country",
];

/// A customer, by its external key: updated when the mapping knows its id, created under the claim's
/// idempotency key otherwise.
pub async fn customer(
    stripe: &Stripe,
    source: RowSource<'_>,
    row: &Map<String, Value>,
) -> Result<RowOutcome, SinkError> {
    let Some(external) = field(row, "external_key") else {
        return Ok(missing("external_key", "customer"));
    };
    let mut content = Form::new();
    for name in ["email", "name", "phone", "description"] {
        if let Some(v) = field(row, name) {
            content.push(name, v);
        }
    }
    for part in ["line1", "line2", "city", "state", "postal_code", "country"] {
        if let Some(v) = field(row, &format!("address_{part}")) {
            content.push_nested("address", part, v);
        }
    }
    metadata(&mut content, row, &CUSTOMER_FIELDS);
    content.push_nested("metadata", EXTERNAL_KEY_METADATA, external.as_str());
    let connector = &source.version.connector_id;
    let mapped = stripe
        .customers
        .claim(connector, &external, &source.key("create-customer"))
        .await
        .map_err(|e| SinkError::transient("claim the customer mapping", e))?;
    match mapped {
        Mapping::Known { customer_id } => known(stripe, source, &customer_id, content).await,
        Mapping::Claimed { idempotency_key } => {
            create(stripe, source, &external, content, &idempotency_key, false).await
        }
        Mapping::Pending { idempotency_key } => {
            if let Some(customer_id) = search(stripe, &external).await? {
                record(stripe, connector, &external, &customer_id).await?;
                return known(stripe, source, &customer_id, content).await;
            }
            create(stripe, source, &external, content, &idempotency_key, true).await
        }
    }
}

/// Updates the customer `customer_id` when it differs from the row.
async fn known(
    stripe: &Stripe,
    source: RowSource<'_>,
    customer_id: &str,
    content: Form,
) -> Result<RowOutcome, SinkError> {
    let path = format!("/v1/customers/{}", segment(customer_id));
    match stripe.get(&path).await? {
        Reply::Object(existing) if existing.get("deleted") != Some(&Value::Bool(true)) => {
            update(stripe, source, &path, &existing, content).await
        }
        Reply::Refused(r) => Ok(refused(&r)),
        _ => Ok(RowOutcome::Refused(RowError::column(
            "external_key",
            ErrorCode::DestinationRejected,
            format!("the customer {customer_id} this external key maps to was deleted in Stripe"),
        ))),
    }
}

/// Creates the customer under `idempotency_key` and records its id. `pending`: the key is an earlier
/// claim's, whose create may have run with other values (Stripe then refuses the key's reuse).
async fn create(
    stripe: &Stripe,
    source: RowSource<'_>,
    external: &str,
    content: Form,
    idempotency_key: &str,
    pending: bool,
) -> Result<RowOutcome, SinkError> {
    let mut form = content;
    source.lineage(&mut form);
    match stripe
        .post("/v1/customers", &form, Some(idempotency_key))
        .await?
    {
        Reply::Object(created) => {
            let id = id_of(&created)?;
            record(stripe, &source.version.connector_id, external, &id).await?;
            Ok(RowOutcome::Written)
        }
        Reply::Missing => Ok(RowOutcome::Refused(RowError::record(
            ErrorCode::DestinationRejected,
            "Stripe answered 404 to a customer create",
        ))),
        Reply::Refused(r) if pending && r.kind.as_deref() == Some("idempotency_error") => {
            // The earlier create ran with other values: the customer exists, and Stripe's search will
            // find it once its index catches up (usually within a minute). The file is retried then.
            Err(SinkError::transient(
                format!("resume the create of the customer with external key {external}"),
                StripeError::Mapping(format!(
                    "an earlier create under this key ran with other values and the customer is not \
                     searchable yet: {r}"
                )),
            ))
        }
        Reply::Refused(r) => Ok(refused(&r)),
    }
}

async fn record(
    stripe: &Stripe,
    connector: &str,
    external: &str,
    customer_id: &str,
) -> Result<(), SinkError> {
    stripe
        .customers
        .record(connector, external, customer_id)
        .await
        .map_err(|e| SinkError::transient("record the customer mapping", e))
}

/// The id of the customer whose metadata holds `external`, by Stripe's search (`GET
/// /v1/customers/search`): the oldest when several do. `None` when none does yet, or when the server has
/// no search (404) or refuses it (the create under the claim's key is then the only guard).
async fn search(stripe: &Stripe, external: &str) -> Result<Option<String>, SinkError> {
    let query = search_query(external);
    let path = format!(
        "/v1/customers/search?query={}",
        url::form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>()
    );
    match stripe.get(&path).await? {
        Reply::Object(found) => {
            let oldest = found
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| c.get("deleted") != Some(&Value::Bool(true)))
                .min_by_key(|c| c.get("created").and_then(Value::as_i64).unwrap_or(i64::MAX))
                .map(id_of)
                .transpose()?;
            debug!(
                found = oldest.is_some(),
                "customer searched by external key"
            );
            Ok(oldest)
        }
        Reply::Missing => Ok(None),
        Reply::Refused(r) => {
            warn!(refusal = %r, "Stripe refused the customer search; creating under the claim's key");
            Ok(None)
        }
    }
}

/// Stripe's search query for a metadata value: `metadata['k']:'v'`, quotes and backslashes escaped.
pub fn search_query(external: &str) -> String {
    let escaped = external.replace('\\', "\\\\").replace('\'', "\\'");
    format!("metadata['{EXTERNAL_KEY_METADATA}']:'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::search_query;

    #[test]
    fn the_search_query_escapes_quotes_and_backslashes() {
        assert_eq!(
            search_query(r"o'k\x"),
            r"metadata['s3i_external_key']:'o\'k\\x'"
        );
    }
}
