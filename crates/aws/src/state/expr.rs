//! Expression attribute names and values, built alongside the expression that uses them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// The placeholders of one request's expressions (key condition, filter, update, condition).
///
/// DynamoDB rejects a request that defines a placeholder none of its expressions uses, so placeholders
/// are only made by the code that writes them into an expression.
#[derive(Debug, Clone, Default)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// `#name` for an attribute (every attribute goes through a placeholder: `status`, `name`, `source`
    /// and many more are reserved words).
    pub(super) fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!(
            "#{}",
            attribute.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// `:placeholder` for a value.
    pub(super) fn value(&mut self, placeholder: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{placeholder}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// True when `attribute` already has a name placeholder.
    pub(super) fn names_attribute(&self, attribute: &str) -> bool {
        self.names.values().any(|n| n == attribute)
    }

    /// The names, for `set_expression_attribute_names` (`None` when there are none).
    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// The values, for `set_expression_attribute_values` (`None` when there are none).
    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_stand_for_reserved_and_dotted_names() {
        let mut expr = Expr::default();
        assert_eq!(expr.name("status"), "#status");
        assert_eq!(expr.name("lease-owner.x"), "#lease_owner_x");
        assert_eq!(expr.value("now", AttributeValue::N("1".into())), ":now");
        assert!(expr.names_attribute("lease-owner.x"));
        assert!(!expr.names_attribute("lease_owner_x"));
        assert_eq!(expr.names().map(|n| n.len()), Some(2));
        assert_eq!(expr.values().map(|v| v.len()), Some(1));
        assert_eq!(Expr::default().names(), None);
        assert_eq!(Expr::default().values(), None);
    }
}
