//! Every metric the pipeline records, named in one place (see docs/metrics.md).

pub const CHANGES: &str = "tributary_source_changes_total";
pub const TRANSACTIONS: &str = "tributary_source_transactions_total";
pub const PUBLISHED: &str = "tributary_source_published_messages_total";
pub const PUBLISH_LATENCY: &str = "tributary_source_publish_ack_seconds";
pub const SKIPPED_RESENT: &str = "tributary_source_resent_changes_skipped_total";
pub const LAG_BYTES: &str = "tributary_source_replication_lag_bytes";
pub const LAG_SECONDS: &str = "tributary_source_replication_lag_seconds";
pub const CONFIRMED_LSN: &str = "tributary_source_confirmed_lsn";
pub const SERVER_WAL_LSN: &str = "tributary_source_server_wal_lsn";
pub const RECONNECTS: &str = "tributary_source_reconnects_total";
pub const ERRORS: &str = "tributary_source_errors_total";
pub const VALUE_FALLBACKS: &str = "tributary_source_value_fallbacks_total";
pub const HEARTBEATS: &str = "tributary_source_heartbeats_total";
pub const SOURCE_UP: &str = "tributary_source_up";
pub const SNAPSHOT_ROWS: &str = "tributary_snapshot_rows_total";
pub const SNAPSHOT_ROWS_ESTIMATED: &str = "tributary_snapshot_rows_estimated";
pub const BACKFILL_ROWS: &str = "tributary_backfill_rows_total";
pub const LAG_OVER_BUDGET: &str = "tributary_source_slot_lag_over_budget";

/// Registers descriptions so that `/metrics` explains each series.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        CHANGES,
        "Row changes read from the source and sent to JetStream, by source, table and op"
    );
    describe_counter!(TRANSACTIONS, "Committed transactions read from the source");
    describe_counter!(PUBLISHED, "Messages acknowledged by JetStream, by source");
    describe_histogram!(
        PUBLISH_LATENCY,
        Unit::Seconds,
        "Time from sending a message to its JetStream ack"
    );
    describe_counter!(
        SKIPPED_RESENT,
        "Changes re-sent by PostgreSQL after a restart that the stream already holds"
    );
    describe_gauge!(
        LAG_BYTES,
        Unit::Bytes,
        "Bytes of WAL between the server's current position and the confirmed position"
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "Seconds since the commit time of the last change acknowledged by JetStream, while behind"
    );
    describe_gauge!(
        CONFIRMED_LSN,
        "Slot position confirmed to PostgreSQL (as a number)"
    );
    describe_gauge!(
        SERVER_WAL_LSN,
        "Server WAL position last reported by the walsender (as a number)"
    );
    describe_counter!(RECONNECTS, "Sessions restarted after a transient error");
    describe_counter!(ERRORS, "Errors by class");
    describe_counter!(
        VALUE_FALLBACKS,
        "Values that did not parse as their type and were sent as text"
    );
    describe_counter!(HEARTBEATS, "Heartbeat messages written to idle sources");
    describe_counter!(
        SNAPSHOT_ROWS,
        "Rows copied by snapshots, by source and table"
    );
    describe_gauge!(
        SNAPSHOT_ROWS_ESTIMATED,
        "Estimated rows of each table being snapshotted (pg_class.reltuples)"
    );
    describe_counter!(
        BACKFILL_ROWS,
        "Rows selected by online backfills, by source and table (before watermark deduplication)"
    );
    describe_gauge!(SOURCE_UP, "1 while the source is streaming, 0 otherwise");
    describe_gauge!(LAG_OVER_BUDGET, "1 while the slot's lag exceeds the configured budget in bytes or seconds, by source and kind");
}

/// Every value of the `op` label (`relations::Op::name`; a test there keeps them equal).
pub const OPS: [&str; 5] = ["insert", "update", "delete", "truncate", "read"];

/// Creates every series whose labels the configuration names (sources, their listed tables)
/// at zero, so that `rate()`, `absent()` and the alerts see a source that has done nothing
/// yet. Positions (`…_lsn`) are left out: 0 is not a position, and the first status
/// update sets them.
pub fn register(config: &tributary_config::Config) {
    use metrics::{counter, gauge};
    for source in &config.sources {
        let s = source.name.clone();
        for name in [
            TRANSACTIONS,
            PUBLISHED,
            SKIPPED_RESENT,
            RECONNECTS,
            VALUE_FALLBACKS,
            HEARTBEATS,
        ] {
            counter!(name, "source" => s.clone()).increment(0);
        }
        for name in [LAG_BYTES, LAG_SECONDS, SOURCE_UP] {
            gauge!(name, "source" => s.clone()).set(0.0);
        }
        for kind in ["bytes", "seconds"] {
            gauge!(LAG_OVER_BUDGET, "source" => s.clone(), "kind" => kind).set(0.0);
        }
        // Validation requires `schema.table`, the label the decoder gives.
        for table in &source.tables {
            for op in OPS {
                counter!(CHANGES, "source" => s.clone(), "table" => table.clone(), "op" => op)
                    .increment(0);
            }
            for name in [SNAPSHOT_ROWS, BACKFILL_ROWS] {
                counter!(name, "source" => s.clone(), "table" => table.clone()).increment(0);
            }
            gauge!(SNAPSHOT_ROWS_ESTIMATED, "source" => s.clone(), "table" => table.clone())
                .set(0.0);
        }
    }
}
