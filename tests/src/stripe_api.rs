//! A request-level Stripe API on loopback, for what localstripe lacks (prices, billing meter events,
//! idempotency keys, rate limiting): a hyper server answering like Stripe's API reference — form bodies,
//! `{"error":{"type","code","message","param"}}` errors, a request with an `Idempotency-Key` already seen
//! answered with the first answer and no second effect — recording every request (method, path, form,
//! headers), with a requests-per-second limit answering 429 `rate_limit` beyond it, injected statuses, and
//! a revoked key (401 everywhere) or one accepted key (401 for any other). Customers are kept too (created
//! with Stripe-chosen ids) and products (with caller-chosen ids and a default price made from
//! `default_price_data`, which localstripe refuses), so a create left behind by a crash can be replayed by its idempotency key; a
//! key reused with other parameters is refused with `idempotency_error`, as Stripe does.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`.
    pub method: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The query's pairs, decoded.
    pub query: Vec<(String, String)>,
    /// The form body's pairs, decoded.
    pub form: Vec<(String, String)>,
    /// The raw body.
    pub body: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `Stripe-Version`.
    pub stripe_version: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
}

impl Recorded {
    /// The form value of `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server holds.
#[derive(Debug, Default)]
pub struct State {
    /// Every request, in order.
    pub requests: Vec<Recorded>,
    /// Prices, in creation order.
    pub prices: Vec<Value>,
    /// Meter events accepted, in order.
    pub meter_events: Vec<Value>,
    /// Customers, in creation order.
    pub customers: Vec<Value>,
    /// Products, in creation order.
    pub products: Vec<Value>,
    /// Requests answered from the idempotency store.
    pub replays: usize,
    /// 429s answered by the rate limit.
    pub rate_limited: usize,
    idempotent: HashMap<String, (String, (u16, Value))>,
    faults: VecDeque<(u16, Option<bool>)>,
    limit: Option<u32>,
    window: VecDeque<Instant>,
    revoked: bool,
    accepted_key: Option<String>,
    search_lags: bool,
}

/// The running server.
pub struct StripeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for StripeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StripeApi {
    /// A server on 127.0.0.1 (a free port).
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the Stripe API server")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers more than `per_second` requests in any second with 429 `rate_limit`, as Stripe does.
    pub fn limit(&self, per_second: u32) {
        lock(&self.state).limit = Some(per_second);
    }

    /// The next requests meet these statuses (with `Stripe-Should-Retry` when given), one each.
    pub fn inject(&self, faults: impl IntoIterator<Item = (u16, Option<bool>)>) {
        lock(&self.state).faults.extend(faults);
    }

    /// Every request answers 401 from now on (the key was revoked).
    pub fn revoke(&self) {
        lock(&self.state).revoked = true;
    }

    /// Only `key` is accepted from now on: any other answers 401, as a rotated-away key does.
    pub fn accept_only(&self, key: &str) {
        lock(&self.state).accepted_key = Some(key.to_owned());
    }

    /// While `lagging`, customer searches find nothing, as Stripe's search index does for up to a minute
    /// after a write.
    pub fn search_lags(&self, lagging: bool) {
        lock(&self.state).search_lags = lagging;
    }

    /// Reads the state.
    pub fn seen<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&lock(&self.state))
    }
}

fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> (u16, Value) {
    let mut e = Map::new();
    e.insert("type".into(), kind.into());
    e.insert("message".into(), message.into());
    if let Some(code) = code {
        e.insert("code".into(), code.into());
    }
    if let Some(param) = param {
        e.insert("param".into(), param.into());
    }
    (status, json!({ "error": e }))
}

fn invalid(code: &str, message: &str, param: &str) -> (u16, Value) {
    error(
        400,
        "invalid_request_error",
        Some(code),
        message,
        Some(param),
    )
}

fn pairs(text: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn handle(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut recorded = Recorded {
        method: request.method().to_string(),
        path: url::form_urlencoded::parse(format!("p={}", request.uri().path()).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default(),
        query: pairs(request.uri().query().unwrap_or_default()),
        form: Vec::new(),
        body: String::new(),
        content_type: header("content-type"),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        authorization: header("authorization"),
        status: 0,
    };
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    recorded.body = String::from_utf8_lossy(&body).into_owned();
    recorded.form = pairs(&recorded.body);
    let mut s = lock(&state);
    let mut should_retry = None;
    let authorization = recorded.authorization.as_deref().unwrap_or_default();
    let (status, value) = if s.revoked
        || !(authorization.starts_with("Bearer sk_") || authorization.starts_with("Bearer rk_"))
        || s.accepted_key
            .as_deref()
            .is_some_and(|k| authorization != format!("Bearer {k}"))
    {
        error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_test_****",
            None,
        )
    } else if let Some((status, retry)) = s.faults.pop_front() {
        should_retry = retry;
        error(status, "api_error", None, "injected", None)
    } else if over_limit(&mut s) {
        s.rate_limited += 1;
        error(
            429,
            "invalid_request_error",
            Some("rate_limit"),
            "Too many requests hit the API too quickly.",
            None,
        )
    } else if let Some((body, stored)) = recorded
        .idempotency_key
        .as_ref()
        .and_then(|k| s.idempotent.get(k).cloned())
    {
        if body == recorded.body {
            s.replays += 1;
            stored
        } else {
            error(
                400,
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were \
                 first used with.",
                None,
            )
        }
    } else {
        let answer = route(&mut s, &recorded);
        if let Some(key) = &recorded.idempotency_key {
            // Stripe keeps the answer of a request that ran (not of one refused before running).
            if answer.0 < 500 {
                s.idempotent
                    .insert(key.clone(), (recorded.body.clone(), answer.clone()));
            }
        }
        answer
    };
    recorded.status = status;
    s.requests.push(recorded);
    drop(s);
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", "req_test");
    if let Some(retry) = should_retry {
        response = response.header("stripe-should-retry", retry.to_string());
    }
    response
        .body(Full::new(Bytes::from(value.to_string())))
        .map_err(std::io::Error::other)
}

fn over_limit(s: &mut State) -> bool {
    let Some(limit) = s.limit else { return false };
    let now = Instant::now();
    while s
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        s.window.pop_front();
    }
    if s.window.len() >= limit as usize {
        return true;
    }
    s.window.push_back(now);
    false
}

fn route(s: &mut State, r: &Recorded) -> (u16, Value) {
    let segments: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    match (r.method.as_str(), segments.as_slice()) {
        ("GET", ["v1", "prices"]) => {
            let keys: Vec<&str> = r
                .query
                .iter()
                .filter(|(k, _)| k == "lookup_keys[]")
                .map(|(_, v)| v.as_str())
                .collect();
            let data: Vec<Value> = s
                .prices
                .iter()
                .filter(|p| {
                    keys.is_empty()
                        || p.get("lookup_key")
                            .and_then(Value::as_str)
                            .is_some_and(|k| keys.contains(&k))
                })
                .cloned()
                .collect();
            (
                200,
                json!({"object": "list", "data": data, "has_more": false, "url": "/v1/prices"}),
            )
        }
        ("POST", ["v1", "prices"]) => create_price(s, r),
        ("POST", ["v1", "prices", id]) => {
            let Some(price) = s
                .prices
                .iter_mut()
                .find(|p| p.get("id").and_then(Value::as_str) == Some(id))
            else {
                return invalid("resource_missing", &format!("No such price: '{id}'"), "id");
            };
            apply(price, &r.form, &["nickname", "active"]);
            (200, price.clone())
        }
        ("GET", ["v1", "products", id]) => match s.products.iter().find(|p| p["id"] == *id) {
            Some(p) => (200, p.clone()),
            None => missing("product", id),
        },
        ("POST", ["v1", "products"]) => create_product(s, r),
        ("POST", ["v1", "products", id]) => match s.products.iter_mut().find(|p| p["id"] == *id) {
            Some(p) => {
                apply(p, &r.form, &PRODUCT_FIELDS);
                (200, p.clone())
            }
            None => missing("product", id),
        },
        ("GET", ["v1", "customers"]) => (
            200,
            json!({"object": "list", "data": s.customers.clone(), "has_more": false}),
        ),
        ("POST", ["v1", "customers"]) => {
            let mut customer = json!({
                "id": format!("cus_{}", s.customers.len() + 1),
                "object": "customer",
                "created": s.customers.len(),
                "metadata": {},
            });
            apply(&mut customer, &r.form, &CUSTOMER_FIELDS);
            s.customers.push(customer.clone());
            (200, customer)
        }
        ("GET", ["v1", "customers", "search"]) => {
            let data: Vec<Value> = match r.query.iter().find(|(k, _)| k == "query") {
                _ if s.search_lags => Vec::new(),
                Some((_, query)) => match metadata_clause(query) {
                    Some((key, value)) => s
                        .customers
                        .iter()
                        .filter(|c| c["metadata"][&key].as_str() == Some(value.as_str()))
                        .cloned()
                        .collect(),
                    None => return invalid("invalid_search_query", "Unsupported query.", "query"),
                },
                None => {
                    return invalid(
                        "parameter_missing",
                        "Missing required param: query.",
                        "query",
                    )
                }
            };
            (
                200,
                json!({"object": "search_result", "data": data, "has_more": false}),
            )
        }
        ("GET", ["v1", "customers", id]) => match customer(s, id) {
            Some(c) => (200, c.clone()),
            None => missing("customer", id),
        },
        ("POST", ["v1", "customers", id]) => match customer(s, id) {
            Some(c) => {
                apply(c, &r.form, &CUSTOMER_FIELDS);
                (200, c.clone())
            }
            None => missing("customer", id),
        },
        ("GET", ["v1", "billing", "meters"]) => (
            200,
            json!({"object": "list", "data": [], "has_more": false}),
        ),
        ("POST", ["v1", "billing", "meter_events"]) => {
            for required in [
                "event_name",
                "payload[stripe_customer_id]",
                "payload[value]",
            ] {
                if r.field(required).is_none() {
                    return invalid(
                        "parameter_missing",
                        &format!("Missing required param: {required}."),
                        required,
                    );
                }
            }
            if r.field("payload[value]")
                .is_some_and(|v| v.parse::<f64>().is_err())
            {
                return invalid(
                    "parameter_invalid_number",
                    "Invalid number: payload[value] must be numeric.",
                    "payload[value]",
                );
            }
            let event = json!({
                "object": "billing.meter_event",
                "event_name": r.field("event_name"),
                "identifier": r.field("identifier"),
                "timestamp": r.field("timestamp").and_then(|t| t.parse::<i64>().ok()),
                "payload": {
                    "stripe_customer_id": r.field("payload[stripe_customer_id]"),
                    "value": r.field("payload[value]"),
                },
            });
            s.meter_events.push(event.clone());
            (200, event)
        }
        _ => error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("Unrecognized request URL ({} {}).", r.method, r.path),
            None,
        ),
    }
}

/// The product fields a create or update sets (besides `metadata[…]`).
const PRODUCT_FIELDS: [&str; 5] = ["id", "name", "description", "active", "url"];

/// `POST /v1/products`: the caller's id, and a price made from `default_price_data` when given.
fn create_product(s: &mut State, r: &Recorded) -> (u16, Value) {
    let Some(id) = r.field("id") else {
        return invalid("parameter_missing", "Missing required param: id.", "id");
    };
    if s.products.iter().any(|p| p["id"] == id) {
        return invalid(
            "resource_already_exists",
            &format!("Product already exists: '{id}'"),
            "id",
        );
    }
    let mut product = json!({"object": "product", "metadata": {}, "default_price": null});
    apply(&mut product, &r.form, &PRODUCT_FIELDS);
    if let Some(amount) = r.field("default_price_data[unit_amount]") {
        let Ok(amount) = amount.parse::<i64>() else {
            return invalid(
                "parameter_invalid_integer",
                "Invalid integer: default_price_data[unit_amount]",
                "default_price_data[unit_amount]",
            );
        };
        let Some(currency) = r.field("default_price_data[currency]") else {
            return invalid(
                "parameter_missing",
                "Missing required param: default_price_data[currency].",
                "default_price_data[currency]",
            );
        };
        let price_id = format!("price_{}", s.prices.len() + 1);
        s.prices.push(json!({
            "id": price_id,
            "object": "price",
            "active": true,
            "currency": currency,
            "product": id,
            "unit_amount": amount,
            "lookup_key": null,
            "recurring": null,
            "type": "one_time",
            "metadata": {},
        }));
        product["default_price"] = Value::from(price_id);
    }
    s.products.push(product.clone());
    (200, product)
}

/// The customer fields a create or update sets (besides `metadata[…]` and `address[…]`).
const CUSTOMER_FIELDS: [&str; 4] = ["email", "name", "phone", "description"];

/// `metadata['k']:'v'` (Stripe's search syntax, `\'` and `\\` escaped in the value) → `(k, v)`.
fn metadata_clause(query: &str) -> Option<(String, String)> {
    let rest = query.strip_prefix("metadata['")?;
    let (key, value) = rest.split_once("']:'")?;
    let value = value.strip_suffix('\'')?;
    let mut unescaped = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        unescaped.push(if c == '\\' { chars.next()? } else { c });
    }
    Some((key.to_owned(), unescaped))
}

fn customer<'a>(s: &'a mut State, id: &str) -> Option<&'a mut Value> {
    s.customers
        .iter_mut()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
}

/// Stripe's 404 for an object that does not exist.
fn missing(kind: &str, id: &str) -> (u16, Value) {
    error(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        Some("id"),
    )
}

/// Sets the form's `metadata[k]`, `address[k]` and the `fields` named on `object`.
fn apply(object: &mut Value, form: &[(String, String)], fields: &[&str]) {
    for (name, value) in form {
        let nested = ["metadata", "address"].into_iter().find_map(|parent| {
            name.strip_prefix(parent)
                .and_then(|k| k.strip_prefix('['))
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (parent, k))
        });
        if let Some((parent, k)) = nested {
            if !object[parent].is_object() {
                object[parent] = json!({});
            }
            object[parent][k] = Value::from(value.as_str());
        } else if fields.contains(&name.as_str()) {
            object[name.as_str()] = Value::from(value.as_str());
        }
    }
}

fn create_price(s: &mut State, r: &Recorded) -> (u16, Value) {
    let Some(currency) = r.field("currency") else {
        return invalid(
            "parameter_missing",
            "Missing required param: currency.",
            "currency",
        );
    };
    let Some(product) = r.field("product") else {
        return invalid(
            "parameter_missing",
            "Missing required param: product.",
            "product",
        );
    };
    if !product.starts_with("prod_") {
        return invalid(
            "resource_missing",
            &format!("No such product: '{product}'"),
            "product",
        );
    }
    let amount = match r.field("unit_amount").map(str::parse::<i64>) {
        Some(Ok(a)) if a >= 0 => a,
        _ => {
            return invalid(
                "parameter_invalid_integer",
                "Invalid integer: unit_amount",
                "unit_amount",
            )
        }
    };
    let lookup_key = r.field("lookup_key");
    if let Some(key) = lookup_key {
        let holder = s
            .prices
            .iter()
            .position(|p| p.get("lookup_key").and_then(Value::as_str) == Some(key));
        if let Some(i) = holder {
            if r.field("transfer_lookup_key") != Some("true") {
                let id = s.prices[i]["id"].clone();
                return invalid(
                    "lookup_key_already_used",
                    &format!("A price ({id}) already uses that lookup key."),
                    "lookup_key",
                );
            }
            s.prices[i]["lookup_key"] = Value::Null;
        }
    }
    let recurring = r.field("recurring[interval]").map(|i| {
        json!({"interval": i, "interval_count": r.field("recurring[interval_count]").and_then(|c| c.parse::<i64>().ok()).unwrap_or(1)})
    });
    let mut price = json!({
        "id": format!("price_{}", s.prices.len() + 1),
        "object": "price",
        "active": true,
        "currency": currency,
        "product": product,
        "unit_amount": amount,
        "lookup_key": lookup_key,
        "nickname": r.field("nickname"),
        "recurring": recurring,
        "type": if recurring.is_some() { "recurring" } else { "one_time" },
        "metadata": {},
    });
    apply(&mut price, &r.form, &[]);
    s.prices.push(price.clone());
    (200, price)
}
