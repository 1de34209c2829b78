//! Stripe's request bodies: `application/x-www-form-urlencoded` pairs, nested fields written with brackets
//! (`metadata[plan]=pro`, `payload[value]=3`, `lookup_keys[]=k`), and the comparison of a wanted form with
//! an object Stripe returned (to skip an update that would change nothing).

use serde_json::Value;

/// The fields of one request, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name=value`.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// Adds `outer[inner]=value`.
    pub fn push_nested(&mut self, outer: &str, inner: &str, value: impl Into<String>) -> &mut Self {
        self.push(format!("{outer}[{inner}]"), value)
    }

    /// The pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs whose name is not in `except`.
    pub fn without(&self, except: &[&str]) -> Self {
        Self {
            pairs: self
                .pairs
                .iter()
                .filter(|(n, _)| !except.contains(&n.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// The encoded body (brackets percent-encoded, as browsers and Stripe's libraries do).
    pub fn encode(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.pairs {
            out.append_pair(name, value);
        }
        out.finish()
    }

    /// Whether `object` already has every value of this form: `a[b]` is read as `object.a.b`, booleans and
    /// numbers compare by their text, an empty value matches null or a missing field.
    pub fn matches(&self, object: &Value) -> bool {
        self.pairs.iter().all(|(name, wanted)| {
            let mut at = object;
            for part in path(name) {
                at = at.get(part).unwrap_or(&Value::Null);
            }
            text(at) == *wanted
        })
    }
}

/// `a[b][c]` → `["a", "b", "c"]`.
fn path(name: &str) -> impl Iterator<Item = &str> {
    name.split('[').map(|p| p.trim_end_matches(']'))
}

/// A JSON scalar as a form value.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Percent-encodes one path segment (an id chosen by the file: `a#b`, `x/y`).
pub fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_are_bracketed_and_encoded() {
        let mut form = Form::new();
        form.push("event_name", "api calls")
            .push_nested("payload", "stripe_customer_id", "cus_1")
            .push_nested("metadata", "a&b", "x=y");
        assert_eq!(
            form.encode(),
            "event_name=api+calls&payload%5Bstripe_customer_id%5D=cus_1&metadata%5Ba%26b%5D=x%3Dy"
        );
        assert_eq!(form.get("payload[stripe_customer_id]"), Some("cus_1"));
        assert_eq!(form.without(&["event_name"]).pairs().len(), 2);
    }

    #[test]
    fn a_form_matches_the_object_holding_its_values() {
        let object = serde_json::json!({
            "name": "Pen", "active": true, "description": null,
            "metadata": {"qty": "10"}, "address": {"city": "Lyon"}
        });
        let mut form = Form::new();
        form.push("name", "Pen")
            .push("active", "true")
            .push("description", "")
            .push_nested("metadata", "qty", "10")
            .push_nested("address", "city", "Lyon");
        assert!(form.matches(&object));
        form.push_nested("metadata", "colour", "red");
        assert!(!form.matches(&object));
        let mut changed = Form::new();
        changed.push("active", "false");
        assert!(!changed.matches(&object));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("a#b"), "a%23b");
        assert_eq!(segment("x y/z"), "x%20y%2Fz");
        assert_eq!(segment("prod_1"), "prod_1");
    }
}
