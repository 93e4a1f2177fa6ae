//! Customers: the ERP's customer is found in Shopify by the link the sink keeps, else by
//! e-mail, else created (under the event's idempotency key); then its fields are updated.

use serde_json::{json, Map, Value};
use tributary_proto::retail::v1::Customer;

use super::{quoted, user_errors, ShopifyTarget, MUTATION_COST};

/// The customer with an email address.
pub(super) const CUSTOMER_BY_EMAIL: &str =
    "query Find($q: String!) { customers(first: 1, query: $q) { nodes { id } } }";
/// customers (2 + 1 × node 1).
pub(super) const CUSTOMER_BY_EMAIL_COST: f64 = 3.0;
use crate::outcome::Outcome;
use crate::state::EntityRecord;
use crate::ApplyError;

impl ShopifyTarget {
    pub(super) async fn upsert_customer(
        &self,
        c: &Customer,
        record: &mut EntityRecord,
        idempotency_key: &str,
    ) -> Result<Outcome, ApplyError> {
        // Empty fields are left out: a partial event must not blank what it does not carry.
        let mut input = Map::new();
        for (k, v) in [
            ("email", &c.email),
            ("firstName", &c.first_name),
            ("lastName", &c.last_name),
            ("phone", &c.phone),
        ] {
            if !v.is_empty() {
                input.insert(k.into(), Value::String(v.clone()));
            }
        }
        if input.is_empty() {
            return Ok(Outcome::Ignored("no customer fields"));
        }
        let mut linked = record.data["shopify_customer"].as_str().map(str::to_string);
        if linked.is_none() && !c.email.is_empty() {
            // A crash after customerCreate and before the link was stored lands here.
            linked = self.customer_by_email(&c.email).await?;
        }
        let (field, query) = match &linked {
            Some(id) => {
                input.insert("id".into(), Value::String(id.clone()));
                (
                    "customerUpdate",
                    "mutation Customer($input: CustomerInput!) { customerUpdate(input: $input) { customer { id } userErrors { field message code } } }".to_string(),
                )
            }
            None => (
                "customerCreate",
                format!(
                    "mutation Customer($input: CustomerInput!) {{ customerCreate(input: $input) @idempotent(key: {}) {{ customer {{ id }} userErrors {{ field message code }} }} }}",
                    quoted(idempotency_key)
                ),
            ),
        };
        let data = self
            .graphql(&query, json!({"input": input}), MUTATION_COST)
            .await?;
        user_errors(&data[field])?;
        let id = data[field]["customer"]["id"]
            .as_str()
            .map(str::to_string)
            .or(linked)
            .ok_or_else(|| {
                ApplyError::transient(format!("{field} answered without the customer's id"))
            })?;
        if !record.data.is_object() {
            record.data = json!({});
        }
        record.data["shopify_customer"] = Value::String(id);
        Ok(Outcome::Applied)
    }

    async fn customer_by_email(&self, email: &str) -> Result<Option<String>, ApplyError> {
        let data = self
            .graphql(
                CUSTOMER_BY_EMAIL,
                json!({"q": format!("email:{email}")}),
                CUSTOMER_BY_EMAIL_COST,
            )
            .await?;
        Ok(data["customers"]["nodes"][0]["id"]
            .as_str()
            .map(str::to_string))
    }
}
