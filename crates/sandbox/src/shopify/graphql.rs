//! The GraphQL subset the Shopify emulator understands.
//!
//! One operation per request (`query`/`mutation`, named or anonymous, variable definitions
//! skipped) with one or more root fields, each optionally aliased
//! (`m0: inventorySetQuantities(...) m1: inventorySetQuantities(...)`): every root field is
//! executed, in order, and answered under its response key (alias, else name). Arguments may
//! be variables (`$input`) or literals (strings, numbers, booleans, null, enums, lists,
//! objects). Directives after the arguments are parsed; `@idempotent(key: ...)` is honoured per
//! field. Selection sets are parsed into a tree of [`Field`]s (inline fragments `... on T`
//! flattened into their parent; named fragment spreads are not supported): the query cost
//! is computed from them (`cost.rs`) and nested connections are paged by their arguments,
//! but the emulator still answers with every field of each payload object, selected or not.
//! Fragment definitions after the operation are ignored.

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Query,
    Mutation,
}

/// The executable part of a request.
#[derive(Clone, Debug)]
pub struct Operation {
    pub kind: OpKind,
    /// The root fields in document order (mutations run serially in this order).
    pub fields: Vec<RootField>,
}

/// One root field of the operation.
#[derive(Clone, Debug)]
pub struct RootField {
    /// Where the result goes in `data`: the alias, else the field's name.
    pub response_key: String,
    /// The field's name (alias resolved).
    pub name: String,
    /// The field's arguments with variables substituted.
    pub args: Map<String, Value>,
    /// `@idempotent(key: ...)`, if present.
    pub idempotency_key: Option<String>,
    /// The field's selection set (empty for a scalar).
    pub selection: Vec<Field>,
}

/// One field of a selection set below the root.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The alias, else the name.
    pub response_key: String,
    pub name: String,
    /// Arguments with variables substituted (`first: $lines` holds the variable's value).
    pub args: Map<String, Value>,
    /// The field's own selection set (empty for a scalar or an enum).
    pub children: Vec<Field>,
}

/// Parses `query` with `variables`; the error is a GraphQL-style message.
pub fn parse(query: &str, variables: &Map<String, Value>) -> Result<Operation, String> {
    let mut p = Parser {
        s: query.chars().collect(),
        pos: 0,
        vars: variables,
    };
    p.operation()
}

struct Parser<'a> {
    s: Vec<char>,
    pos: usize,
    vars: &'a Map<String, Value>,
}

impl Parser<'_> {
    fn operation(&mut self) -> Result<Operation, String> {
        self.ws();
        let mut kind = OpKind::Query;
        if self.peek() != Some('{') {
            let keyword = self.ident()?;
            kind = match keyword.as_str() {
                "query" => OpKind::Query,
                "mutation" => OpKind::Mutation,
                other => {
                    return Err(format!(
                        "Parse error on \"{other}\": unsupported operation type"
                    ))
                }
            };
            self.ws();
            if self.peek().is_some_and(is_name_start) {
                self.ident()?;
            }
            self.ws();
            if self.peek() == Some('(') {
                self.skip_balanced('(', ')')?;
            }
            self.directives()?;
        }
        self.expect('{')?;
        let mut fields = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                None => return Err("Parse error: missing '}' at the end of the operation".into()),
                _ => fields.push(self.root_field()?),
            }
        }
        if fields.is_empty() {
            return Err("Parse error: an operation needs at least one field".into());
        }
        Ok(Operation { kind, fields })
    }

    fn root_field(&mut self) -> Result<RootField, String> {
        if self.peek() == Some('.') {
            return Err(format!(
                "Parse error: fragment spreads at the root are not supported (emulator subset) at {}",
                self.pos
            ));
        }
        let (response_key, name, args) = self.field_head()?;
        let mut idempotency_key = None;
        self.ws();
        while self.peek() == Some('@') {
            self.pos += 1;
            let directive = self.ident()?;
            self.ws();
            let dargs = if self.peek() == Some('(') {
                self.arguments()?
            } else {
                Map::new()
            };
            if directive == "idempotent" {
                match dargs.get("key") {
                    Some(Value::String(k)) if !k.is_empty() => idempotency_key = Some(k.clone()),
                    _ => {
                        return Err(
                            "Directive 'idempotent' requires a non-empty String 'key'".into()
                        )
                    }
                }
            }
            self.ws();
        }
        let selection = if self.peek() == Some('{') {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(RootField {
            response_key,
            name,
            args,
            idempotency_key,
            selection,
        })
    }

    /// `{ a b: c(x: 1) @d { ... } ... on T { e } }`; the parser is at the `{`.
    fn selection_set(&mut self) -> Result<Vec<Field>, String> {
        self.expect('{')?;
        let mut fields = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some('}') => {
                    self.pos += 1;
                    return Ok(fields);
                }
                None => return Err("Parse error: missing '}' in a selection set".into()),
                Some('.') => {
                    for _ in 0..3 {
                        self.expect('.')?;
                    }
                    self.ws();
                    let on = self.ident()?;
                    if on != "on" {
                        return Err(format!(
                            "Parse error: fragment spread '...{on}' is not supported (emulator subset)"
                        ));
                    }
                    self.ws();
                    self.ident()?;
                    self.directives()?;
                    fields.extend(self.selection_set()?);
                }
                _ => fields.push(self.field()?),
            }
        }
    }

    fn field(&mut self) -> Result<Field, String> {
        let (response_key, name, args) = self.field_head()?;
        self.directives()?;
        let children = if self.peek() == Some('{') {
            self.selection_set()?
        } else {
            Vec::new()
        };
        Ok(Field {
            response_key,
            name,
            args,
            children,
        })
    }

    /// `alias: name(arguments)`: the response key, the name and the arguments.
    fn field_head(&mut self) -> Result<(String, String, Map<String, Value>), String> {
        let mut name = self.ident()?;
        let response_key = name.clone();
        self.ws();
        if self.peek() == Some(':') {
            self.pos += 1;
            self.ws();
            name = self.ident()?;
            self.ws();
        }
        let args = if self.peek() == Some('(') {
            self.arguments()?
        } else {
            Map::new()
        };
        Ok((response_key, name, args))
    }

    /// Skips directives other than a root field's (`@include`, `@skip`: the emulator answers
    /// anyway).
    fn directives(&mut self) -> Result<(), String> {
        self.ws();
        while self.peek() == Some('@') {
            self.pos += 1;
            self.ident()?;
            self.ws();
            if self.peek() == Some('(') {
                self.arguments()?;
            }
            self.ws();
        }
        Ok(())
    }

    fn arguments(&mut self) -> Result<Map<String, Value>, String> {
        self.expect('(')?;
        let mut out = Map::new();
        loop {
            self.ws();
            if self.peek() == Some(')') {
                self.pos += 1;
                return Ok(out);
            }
            let name = self.ident()?;
            self.ws();
            self.expect(':')?;
            let value = self.value()?;
            out.insert(name, value);
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        match self.peek() {
            Some('$') => {
                self.pos += 1;
                let name = self.ident()?;
                Ok(self.vars.get(&name).cloned().unwrap_or(Value::Null))
            }
            Some('"') => self.string().map(Value::String),
            Some('[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if self.peek() == Some(']') {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value()?);
                }
            }
            Some('{') => {
                self.pos += 1;
                let mut obj = Map::new();
                loop {
                    self.ws();
                    if self.peek() == Some('}') {
                        self.pos += 1;
                        return Ok(Value::Object(obj));
                    }
                    let k = self.ident()?;
                    self.ws();
                    self.expect(':')?;
                    obj.insert(k, self.value()?);
                }
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || "-+.eE".contains(c))
                {
                    self.pos += 1;
                }
                let text: String = self.s[start..self.pos].iter().collect();
                serde_json::from_str::<Value>(&text)
                    .map_err(|_| format!("Parse error: bad number {text}"))
            }
            Some(c) if is_name_start(c) => Ok(match self.ident()?.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                other => Value::String(other.to_string()),
            }),
            other => Err(format!("Parse error: unexpected {other:?} at {}", self.pos)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        while let Some(c) = self.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match self.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(c) => out.push(c),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("Parse error: unterminated string".into())
    }

    fn skip_balanced(&mut self, open: char, close: char) -> Result<(), String> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            if c == '"' {
                self.string()?;
                continue;
            }
            self.pos += 1;
            if c == open {
                depth += 1;
            } else if c == close {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Ok(());
                }
            }
        }
        Err(format!("Parse error: missing '{close}'"))
    }

    fn ident(&mut self) -> Result<String, String> {
        let start = self.pos;
        if !self.peek().is_some_and(is_name_start) {
            return Err(format!("Parse error: expected a name at {start}"));
        }
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        Ok(self.s[start..self.pos].iter().collect())
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("Parse error: expected '{c}' at {}", self.pos))
        }
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' {
                self.pos += 1;
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += 1;
        c
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mutation_with_variables_and_idempotency() {
        let vars = json!({"input": {"name": "available"}, "key": "k-1"});
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        let op = parse(
            "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {\n  # c\n  r: inventorySetQuantities(input: $input) @idempotent(key: $key) { userErrors { field } } }",
            &vars,
        )
        .expect("parses");
        assert_eq!(op.kind, OpKind::Mutation);
        assert_eq!(op.fields.len(), 1);
        let f = &op.fields[0];
        assert_eq!(f.name, "inventorySetQuantities");
        assert_eq!(f.response_key, "r");
        assert_eq!(f.args["input"]["name"], "available");
        assert_eq!(f.idempotency_key.as_deref(), Some("k-1"));
    }

    #[test]
    fn several_aliased_root_fields_each_with_its_key() {
        let vars = json!({"i0": {"name": "a"}, "k0": "key-0", "i1": {"name": "b"}, "k1": "key-1"});
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        let op = parse(
            "mutation SetStock($i0: InventorySetQuantitiesInput!, $k0: String!, $i1: InventorySetQuantitiesInput!, $k1: String!) {\n\
             m0: inventorySetQuantities(input: $i0) @idempotent(key: $k0) { inventoryAdjustmentGroup { id } userErrors { field message code } }\n\
             m1: inventorySetQuantities(input: $i1) @idempotent(key: $k1) { userErrors { field message code } }\n\
             m2: inventorySetQuantities(input: {name: \"c\", note: \"{ not a brace }\"}) @idempotent(key: \"lit\") { userErrors { code } }\n\
             }",
            &vars,
        )
        .expect("parses");
        let keys: Vec<(&str, &str, Option<&str>)> = op
            .fields
            .iter()
            .map(|f| {
                (
                    f.response_key.as_str(),
                    f.name.as_str(),
                    f.idempotency_key.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                ("m0", "inventorySetQuantities", Some("key-0")),
                ("m1", "inventorySetQuantities", Some("key-1")),
                ("m2", "inventorySetQuantities", Some("lit")),
            ]
        );
        assert_eq!(op.fields[1].args["input"]["name"], "b");
        assert_eq!(op.fields[2].args["input"]["note"], "{ not a brace }");
        // Unaliased fields answer under their name; an unterminated operation is an error.
        let q = parse(
            "{ shop { name } locations(first: 2) { nodes { id } } }",
            &Map::new(),
        )
        .expect("parses");
        assert_eq!(q.fields.len(), 2);
        assert_eq!(q.fields[1].response_key, "locations");
        assert!(parse("mutation { a: x(i: 1) { id }", &Map::new()).is_err());
        assert!(parse("mutation { }", &Map::new()).is_err());
        assert!(parse("mutation { ...F }", &Map::new()).is_err());
    }

    #[test]
    fn query_with_literals() {
        let op = parse("{ orders(first: 5, query: \"updated_at:>'x'\", reverse: false) { edges { node { id } } } }", &Map::new())
            .expect("parses");
        assert_eq!(op.kind, OpKind::Query);
        assert_eq!(op.fields[0].args["first"], 5);
        assert_eq!(op.fields[0].args["query"], "updated_at:>'x'");
        assert!(parse("mutation { x(a: ) }", &Map::new()).is_err());
    }
}
