//! Requests to the deployment's lister function (Lambda `Invoke`, `RequestResponse`): `connector verify`,
//! `reauth`, `resume` and `sync` run there, as the function's own role — the principal the source roles' trust
//! policies admit — rather than with the operator's credentials.

use anyhow::{anyhow, Context, Result};
use aws_sdk_lambda::types::InvocationType;
use aws_smithy_types::Blob;
use s3_importer_lister::ListerResponse;
use serde_json::{json, Value};

/// The payload asking the lister to run `action` (`verify` or `sync`) on one connector.
pub fn request(action: &str, connector_id: &str) -> Value {
    json!({ "action": action, "connector_id": connector_id })
}

/// Invokes `function` with `payload` and waits for its answer.
pub async fn invoke(
    client: &aws_sdk_lambda::Client,
    function: &str,
    payload: &Value,
) -> Result<ListerResponse> {
    let out = client
        .invoke()
        .function_name(function)
        .invocation_type(InvocationType::RequestResponse)
        .payload(Blob::new(serde_json::to_vec(payload)?))
        .send()
        .await
        .map_err(aws_sdk_lambda::Error::from)
        .with_context(|| {
            format!(
                "cannot invoke the lister function {function} (the operator needs lambda:InvokeFunction on it; \
                 check --stack / --lister-function)"
            )
        })?;
    let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
    if let Some(kind) = out.function_error() {
        // The runtime answers an error with {"errorType": ..., "errorMessage": ...}.
        let message = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        return Err(anyhow!(
            "the lister function {function} failed ({kind}): {message}"
        ));
    }
    serde_json::from_slice(body)
        .with_context(|| format!("the lister function {function} returned an unexpected answer"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_smithy_mocks::{mock, mock_client};

    fn payload_of(req: &aws_sdk_lambda::operation::invoke::InvokeInput) -> Value {
        req.payload()
            .and_then(|b| serde_json::from_slice(b.as_ref()).ok())
            .unwrap_or(Value::Null)
    }

    /// The function's successful answer: HTTP 200 with `answer` as the payload.
    fn answered(answer: &Value) -> impl Fn() -> InvokeOutput + Send + Sync + 'static {
        let body = serde_json::to_vec(answer).unwrap();
        move || {
            InvokeOutput::builder()
                .status_code(200)
                .payload(Blob::new(body.clone()))
                .build()
        }
    }

    #[tokio::test]
    async fn verify_is_a_request_response_invoke_of_the_lister_with_the_connector_id() {
        let answer = json!({
            "connectors": [],
            "report": {"checks": [
                {"check": "assume_role", "status": "pass", "detail": "assumed"},
                {"check": "read", "status": "fail", "detail": "denied", "cause": "missing_permission", "fix": "allow"}
            ]}
        });
        let rule = mock!(aws_sdk_lambda::Client::invoke)
            .match_requests(|r| {
                r.function_name() == Some("prod-lister")
                    && r.invocation_type() == Some(&InvocationType::RequestResponse)
                    && payload_of(r) == json!({"action": "verify", "connector_id": "c-1"})
            })
            .then_output(answered(&answer));
        let client = mock_client!(aws_sdk_lambda, [&rule]);
        let response = invoke(&client, "prod-lister", &request("verify", "c-1"))
            .await
            .unwrap();
        let report = response.report.unwrap();
        assert!(!report.ok());
        let failure = report.first_failure().unwrap();
        assert_eq!(failure.check, "read");
        assert_eq!(failure.cause.as_deref(), Some("missing_permission"));
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn sync_is_an_invoke_with_the_sync_action() {
        let answer = json!({"connectors": [{"connector": "orders", "outcome": "busy"}]});
        let rule = mock!(aws_sdk_lambda::Client::invoke)
            .match_requests(|r| payload_of(r) == json!({"action": "sync", "connector_id": "c-2"}))
            .then_output(answered(&answer));
        let client = mock_client!(aws_sdk_lambda, [&rule]);
        let response = invoke(&client, "f", &request("sync", "c-2")).await.unwrap();
        assert_eq!(response.connectors[0].outcome, "busy");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_function_error_is_reported_with_its_message() {
        let rule = mock!(aws_sdk_lambda::Client::invoke).then_output(|| {
            InvokeOutput::builder()
                .status_code(200)
                .function_error("Unhandled")
                .payload(Blob::new(
                    br#"{"errorType":"UnknownConnector","errorMessage":"no connector named \"x\""}"#.to_vec(),
                ))
                .build()
        });
        let client = mock_client!(aws_sdk_lambda, [&rule]);
        let err = invoke(&client, "f", &request("verify", "x"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no connector named"), "{err}");
    }
}
