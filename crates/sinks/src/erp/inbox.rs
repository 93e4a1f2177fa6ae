//! The inbox writes: one transaction per batch of rows, `ON CONFLICT (event_id) DO NOTHING`,
//! and the ERP's answer per row.
//!
//! ```text
//!  rows of many lanes ─► BEGIN; INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING; COMMIT
//!                          │ refused (the ERP's trigger raised, a constraint failed)
//!                          ▼
//!                        BEGIN; per row: SAVEPOINT; INSERT; RELEASE | ROLLBACK TO; COMMIT
//!                          └─► the refused rows get their SQLSTATE and message, the rest commit
//! ```
//!
//! A replay writes nothing new: the event id is the inbox's key, and a row that is there
//! already is skipped without firing the ERP's processing again. Connection loss,
//! serialization failures and deadlocks are transient (the batch is retried, idempotently);
//! class 42 (a missing grant, a renamed column) is transient too, so that events wait for the
//! operator's fix instead of all going to the dead-letter stream.

use tokio_postgres::Client;
use tributary_postgres::{ConnectParams, ControlConnection};

use crate::batch::BatchSend;
use crate::{ApplyError, SinkError};

/// One event as an inbox row.
pub(crate) struct Row {
    pub event_id: String,
    pub event_type: String,
    pub entity_key: String,
    pub entity_version: i64,
    pub system: String,
    pub payload: String,
}

pub(crate) struct Inbox {
    params: ConnectParams,
    /// `"schema"."table"`, quoted.
    table: String,
    insert: String,
    /// One connection: one request in flight, which keeps transactions from deadlocking
    /// each other on the ERP's stock rows.
    conn: tokio::sync::Mutex<Option<ControlConnection>>,
}

/// Columns the sink writes; the ERP may add its own (processing state, timestamps).
pub(crate) const COLUMNS: [&str; 6] = [
    "event_id",
    "event_type",
    "entity_key",
    "entity_version",
    "source_system",
    "payload",
];

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The ERP's error as the sink's decision (see the module doc).
fn classify(e: &tokio_postgres::Error) -> ApplyError {
    let Some(db) = e.as_db_error() else {
        return ApplyError::transient(format!("ERP connection: {e}"));
    };
    let code = db.code().code();
    let mut text = format!("SQLSTATE {code}: {}", db.message());
    for (label, part) in [
        ("detail", db.detail()),
        ("hint", db.hint()),
        ("where", db.where_()),
    ] {
        if let Some(p) = part {
            text.push_str(&format!("; {label}: {p}"));
        }
    }
    let transient = matches!(code.get(..2), Some("08" | "40" | "42" | "53" | "57" | "58"))
        || matches!(code, "55P03" | "55006");
    if transient {
        ApplyError::transient(format!("ERP: {text}"))
    } else {
        ApplyError::definite(
            format!("ERP refused the event: SQLSTATE {code}: {}", db.message()),
            text,
        )
    }
}

impl Inbox {
    pub(crate) fn new(params: ConnectParams, schema: &str, table: &str) -> Self {
        let table = format!("{}.{}", quote(schema), quote(table));
        let insert = format!(
            "INSERT INTO {table} ({}) SELECT e, t, k, v, s, p::jsonb \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[]) AS u(e, t, k, v, s, p) \
             ON CONFLICT (event_id) DO NOTHING",
            COLUMNS.join(", ")
        );
        Inbox {
            params,
            table,
            insert,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Checks that the inbox exists with the sink's columns and that no publication a source
    /// reads holds it (`publications`: (publication, source)). Keeps the connection.
    pub(crate) async fn preflight(
        &self,
        schema: &str,
        table: &str,
        publications: &[(String, String)],
    ) -> Result<(), SinkError> {
        let conn = ControlConnection::connect(&self.params)
            .await
            .map_err(|e| SinkError::erp("connecting to the ERP database", e))?;
        let client = conn.client();
        let rows = client
            .query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &table],
            )
            .await
            .map_err(|e| SinkError::erp("reading the inbox's columns", e.into()))?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if have.is_empty() {
            return Err(SinkError::config(
                "sinks.erp.table",
                format!(
                    "table {} does not exist in database {} (docs/order-to-cash.md shows one)",
                    self.table, self.params.dbname
                ),
            ));
        }
        let missing: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            return Err(SinkError::config(
                "sinks.erp.table",
                format!(
                    "table {} lacks the column(s) {}",
                    self.table,
                    missing.join(", ")
                ),
            ));
        }
        let names: Vec<String> = publications.iter().map(|(p, _)| p.clone()).collect();
        let rows = client
            .query(
                "SELECT pubname::text FROM pg_publication_tables WHERE schemaname = $1 AND tablename = $2 AND pubname = ANY($3)",
                &[&schema, &table, &names],
            )
            .await
            .map_err(|e| SinkError::erp("reading the publications", e.into()))?;
        if let Some(row) = rows.first() {
            let publication: String = row.get(0);
            let source = publications
                .iter()
                .find(|(p, _)| *p == publication)
                .map(|(_, s)| s.as_str())
                .unwrap_or_default();
            return Err(SinkError::config(
                "sinks.erp.table",
                format!(
                    "table {} is in publication {publication}, which source {source} reads: the bridge's inbox writes would come back as source events; \
                     remove it (ALTER PUBLICATION {} DROP TABLE {}), or list the tables of a FOR ALL TABLES publication",
                    self.table,
                    quote(&publication),
                    self.table
                ),
            ));
        }
        *self.conn.lock().await = Some(conn);
        Ok(())
    }

    /// Every row in one statement, in one transaction.
    async fn write_all(&self, client: &Client, rows: &[Row]) -> Result<(), tokio_postgres::Error> {
        client.batch_execute("BEGIN").await?;
        match self.insert_rows(client, rows).await {
            Ok(()) => client.batch_execute("COMMIT").await,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn insert_rows(
        &self,
        client: &Client,
        rows: &[Row],
    ) -> Result<(), tokio_postgres::Error> {
        let col = |f: fn(&Row) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let ids = col(|r| r.event_id.clone());
        let types = col(|r| r.event_type.clone());
        let keys = col(|r| r.entity_key.clone());
        let versions: Vec<i64> = rows.iter().map(|r| r.entity_version).collect();
        let systems = col(|r| r.system.clone());
        let payloads = col(|r| r.payload.clone());
        client
            .execute(
                &self.insert,
                &[&ids, &types, &keys, &versions, &systems, &payloads],
            )
            .await?;
        Ok(())
    }

    /// Row by row behind savepoints, after the batch was refused: the refused rows get their
    /// error, the others commit. A transient error fails all of them.
    async fn write_each(&self, client: &Client, rows: &[Row]) -> Vec<Result<(), ApplyError>> {
        let all = |e: ApplyError| vec![Err(e); rows.len()];
        if let Err(e) = client.batch_execute("BEGIN").await {
            return all(classify(&e));
        }
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            let step = async {
                client.batch_execute("SAVEPOINT tributary_row").await?;
                match self.insert_rows(client, std::slice::from_ref(row)).await {
                    Ok(()) => client
                        .batch_execute("RELEASE SAVEPOINT tributary_row")
                        .await
                        .map(|()| Ok(())),
                    Err(e) => {
                        let refused = classify(&e);
                        if matches!(refused, ApplyError::Transient { .. }) {
                            return Err(e);
                        }
                        client
                            .batch_execute("ROLLBACK TO SAVEPOINT tributary_row")
                            .await
                            .map(|()| Err(refused))
                    }
                }
            };
            match step.await {
                Ok(result) => results.push(result),
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return all(classify(&e));
                }
            }
        }
        match client.batch_execute("COMMIT").await {
            Ok(()) => results,
            Err(e) => all(classify(&e)),
        }
    }
}

impl BatchSend for Inbox {
    type Item = Row;

    fn group(&self, _: &Row) -> &'static str {
        "inbox"
    }

    async fn send(&self, rows: Vec<Row>) -> Vec<Result<(), ApplyError>> {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_none_or(|c| c.client().is_closed()) {
            match ControlConnection::connect(&self.params).await {
                Ok(c) => *slot = Some(c),
                Err(e) => {
                    *slot = None;
                    return vec![
                        Err(ApplyError::transient(format!("ERP connection: {e}")));
                        rows.len()
                    ];
                }
            }
        }
        let Some(conn) = slot.as_ref() else {
            return vec![Err(ApplyError::transient("ERP connection: not open")); rows.len()];
        };
        let client = conn.client();
        let results = match self.write_all(client, &rows).await {
            Ok(()) => vec![Ok(()); rows.len()],
            Err(e) => match classify(&e) {
                ApplyError::Definite { .. } => self.write_each(client, &rows).await,
                transient => vec![Err(transient); rows.len()],
            },
        };
        if client.is_closed() {
            *slot = None;
        }
        results
    }
}
