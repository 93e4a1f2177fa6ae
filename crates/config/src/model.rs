//! Configuration types. Every struct denies unknown keys so that a typo stops start-up.

use serde::Deserialize;

use crate::Secret;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP server for `/metrics`, `/healthz`, `/readyz` and `/status` (docs/operations.md).
    #[serde(default = "default_http_listen")]
    pub http_listen: String,
    /// Log format and level.
    #[serde(default)]
    pub log: LogConfig,
    /// How long `tributary run` waits for unreachable dependencies (NATS refusing connections, PostgreSQL starting up or in recovery) before it gives up; each attempt is logged. Wrong credentials, a missing publication or an invalid configuration still stop it at once. Default 120.
    #[serde(default = "default_startup_timeout_secs")]
    pub startup_timeout_secs: u64,
    /// The NATS servers, authentication, TLS and stream defaults.
    pub nats: NatsConfig,
    /// How far the slot's confirmation trails JetStream's acks (docs/durability.md).
    #[serde(default)]
    pub durability: DurabilityConfig,
    /// The PostgreSQL databases to replicate, one block each.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// The domain stage: canonical retail events mapped from the sources' changes.
    #[serde(default)]
    pub domain: Option<crate::DomainConfig>,
    /// Sink workers applying domain events to target systems (`[sinks]`).
    #[serde(default)]
    pub sinks: Option<crate::SinksConfig>,
    /// Shopify webhook sources (`[[shopify]]`, see `saas.rs`).
    #[serde(default)]
    pub shopify: Vec<crate::ShopifySourceConfig>,
    /// Salesforce Change Data Capture sources (`[[salesforce_cdc]]`, see `saas.rs`).
    #[serde(default)]
    pub salesforce_cdc: Vec<crate::SalesforceCdcConfig>,
    /// WMS lifecycle webhook sources (`[[wms]]`, see `saas.rs`); one for now.
    #[serde(default)]
    pub wms: Vec<crate::WmsWebhookSourceConfig>,
    /// Limits of the internet-facing webhook listeners (`[webhook_server]`, see `saas.rs`).
    #[serde(default)]
    pub webhook_server: crate::WebhookServerConfig,
    /// Several replicas sharing the work through leases (`[ha]`, see `ha.rs`); absent: one
    /// process runs every unit.
    #[serde(default)]
    pub ha: Option<crate::HaConfig>,
    /// The order-to-cash process tracker (`[tracker]`, see `tracker.rs`); absent: none runs.
    #[serde(default)]
    pub tracker: Option<crate::TrackerConfig>,
    /// Reconciliations between the systems (`[reconcile.inventory]`, see `reconcile.rs`);
    /// absent: none runs.
    #[serde(default)]
    pub reconcile: crate::ReconcileConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` (default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `tributary=debug,info`; `RUST_LOG` overrides it.
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs, e.g. `["nats://nats-1:4222", "nats://nats-2:4222"]`.
    pub servers: Vec<String>,
    /// User name for user/password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Password for `user` (a secret).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Token authentication (a secret).
    #[serde(default)]
    pub token: Option<Secret>,
    /// A `.creds` file (JWT + nkey seed).
    #[serde(default)]
    pub credentials_file: Option<String>,
    /// An nkey seed (`SU...`).
    #[serde(default)]
    pub nkey_seed: Option<Secret>,
    /// TLS to the servers: custom CA, client certificate.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// One connection attempt gives up after this long; start-up retries until `startup_timeout_secs`.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// First token of every subject: `<prefix>.<source>.<schema>.<table>.<op>`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// Publishes awaiting their JetStream ack at once, per source.
    #[serde(default = "default_ack_window")]
    pub ack_window: usize,
    /// Send `Nats-Msg-Id` (= the event's `event_id`) with every change of a source's stream.
    /// Off by default: the expected-last-sequence chain and the watermark read from the last
    /// message's `event_id` keep the stream exactly-once without it (docs/durability.md), and
    /// nats-server's duplicate tracking of the header was ~40 % of its work per change
    /// (docs/performance.md). Turn it on for consumers that read the header rather than the
    /// payload's `event_id`. The SaaS feeds send it whatever this says.
    #[serde(default)]
    pub msg_id_header: bool,
    /// Defaults for every source's stream; a source's `[sources.stream]` overrides them.
    #[serde(default)]
    pub stream: StreamConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificates that sign the server's certificate.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate and key (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Private key (PEM) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Require TLS even when the server does not announce it.
    #[serde(default)]
    pub required: bool,
}

/// Settings of a stream the bridge creates. On a stream that exists already, only the keys
/// set here are applied (each change logged at WARN with its old and new value); a key left
/// unset keeps the stream's value, e.g. an operator's longer `max_age` (docs/operations.md,
/// "Streams the bridge owns").
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Stream name; default `CDC_<SOURCE>` in upper case.
    #[serde(default)]
    pub name: Option<String>,
    /// `file` (default) or `memory`.
    #[serde(default)]
    pub storage: Option<StorageKind>,
    /// Stream replicas on a NATS cluster (1–5, default 1; 3 for durability without fsync per message).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// Messages older than this are removed (default 7 days): the replay horizon.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    /// -1 for no limit.
    #[serde(default)]
    pub max_bytes: Option<i64>,
    /// Window in which JetStream drops a message whose `Nats-Msg-Id` it has seen. Default:
    /// 120 s for a source's stream (the bridge's watermark skips re-sent changes exactly
    /// whatever the window, and nats-server keeps ~150–190 bytes of memory per id in the
    /// window: at 5,000 changes/s an hour would be ~3 GB), 1 h for the other streams.
    #[serde(default)]
    pub duplicate_window_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    File,
    Memory,
}

/// Stream settings after merging the source's overrides onto the `[nats.stream]` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStream {
    pub name: String,
    pub storage: StorageKind,
    pub replicas: usize,
    pub max_age_secs: u64,
    pub max_bytes: i64,
    pub duplicate_window_secs: u64,
    /// The keys the configuration sets (None: the value above is a default). Only these are
    /// applied to a stream that exists already, so that a default never overrides what an
    /// operator set on the stream (docs/operations.md, "Streams the bridge owns").
    pub explicit: StreamConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DurabilityConfig {
    /// Hold the slot's confirmed position back until a JetStream ack is this old. Use it
    /// with a server whose `sync_interval` is not `always` and whose streams have one
    /// replica: set it above the server's sync interval (default 2 min).
    #[serde(default)]
    pub confirm_delay_ms: u64,
}

/// One PostgreSQL database to replicate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Short name used in subjects, stream names, metrics and event ids.
    pub name: String,
    /// Where and how to connect to the database.
    pub connection: ConnectionConfig,
    /// Publication to stream. Created for `tables` when missing and `create_publication` is true.
    pub publication: String,
    /// Create the publication for `tables` when it does not exist (needs table ownership).
    #[serde(default)]
    pub create_publication: bool,
    /// Logical replication slot (pgoutput); created on first start.
    pub slot: String,
    /// Tables as `schema.table`. With an existing publication, changes of other
    /// tables in it are skipped; an empty list takes every table of the publication.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Interval of the heartbeat message that keeps an idle database's slot moving.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_interval_secs: u64,
    /// Interval of standby status updates when nothing else prompts one.
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u64,
    /// Overrides of `[nats.stream]` for this source's stream.
    #[serde(default)]
    pub stream: StreamConfig,
    /// Receive transactions larger than `logical_decoding_work_mem` while they run
    /// (pgoutput protocol 2, PostgreSQL 14+), spooled to disk until they commit. Off: the
    /// server spills them and sends them after the commit.
    #[serde(default = "default_true")]
    pub streaming: bool,
    /// `initial`: on first start, publish the current rows of every published table as `read`
    /// events before the changes that follow; `never`: changes only; `initial_only`: the
    /// snapshot, then stop.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Chunks copied at once during a snapshot (several tables at a time).
    #[serde(default = "default_snapshot_parallelism")]
    pub snapshot_parallelism: usize,
    /// Rows per snapshot chunk: the unit of progress and of parallelism.
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: u64,
    /// Snapshot rows per published message: 1 publishes each row as its own `read` event;
    /// above 1 the rows go out as `ChangeEventBatch` messages on `...read_batch` (consumers
    /// must decode them: docs/consumers.md), which costs the stream far less per row.
    #[serde(default = "default_one")]
    pub snapshot_rows_per_message: usize,
    /// Changes per published message, at most: 1 publishes each change as its own message;
    /// above 1 consecutive row changes of one table and operation within one transaction go
    /// out as one `ChangeEventBatch` on `...<op>_batch` (a batch ends by the transaction's
    /// commit; truncates and logical messages stay single). Consumers must decode batches
    /// first; every replica of a source must use the same value (docs/durability.md).
    #[serde(default = "default_one")]
    pub changes_per_message: usize,
    /// `schema.table` of the signal table (columns `id text`, `type text`, `data text`),
    /// which must be in the publication: a DBA inserts a row to request a backfill, e.g.
    /// `('bf-1', 'backfill', '{"table": "public.orders", "where": "id < 1000"}')`.
    #[serde(default)]
    pub signal_table: Option<String>,
    /// WAL the slot may retain behind Tributary's confirmed position before metrics and logs
    /// warn (`tributary_source_slot_lag_over_budget`).
    #[serde(default = "default_lag_budget_bytes")]
    pub lag_budget_bytes: u64,
    /// Age of the oldest unpublished commit before metrics and logs warn.
    #[serde(default = "default_lag_budget_secs")]
    pub lag_budget_secs: u64,
    /// Directory for the spool of streamed transactions; default `<tmp>/tributary-spool`.
    /// Each source of each process uses its own sub-directory `<source>-<pid>`, removed when
    /// the session ends.
    /// Each source uses a sub-directory named after it.
    #[serde(default)]
    pub spool_dir: Option<String>,
    /// How events describe their columns: `inline` (default) puts the column list and key
    /// columns in every event; `reference` stores each relation version once in the KV bucket
    /// `tributary_cdc_schemas` and events carry its `schema_id` (docs/consumers.md).
    #[serde(default)]
    pub schema: SchemaMode,
}

/// `[[sources]] schema`: column descriptions in every event, or by reference.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SchemaMode {
    /// Self-contained events: the default, what consumers written before references decode.
    #[default]
    Inline,
    /// `ChangeEvent.schema_id` instead of `columns` / `key_columns`.
    Reference,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    #[default]
    Initial,
    Never,
    InitialOnly,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Host name or address of the PostgreSQL server.
    pub host: String,
    /// Port (default 5432).
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Role with the REPLICATION attribute and SELECT on the published tables (docs/dba.md).
    pub user: String,
    /// Password (a secret); omit for trust authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Database name.
    pub dbname: String,
    /// `disable` (default), `prefer`, `require`, `verify-ca` or `verify-full`, as libpq.
    #[serde(default)]
    pub sslmode: SslMode,
    /// PEM file with the CA certificates for `verify-ca` / `verify-full`.
    #[serde(default)]
    pub sslrootcert: Option<String>,
    /// Give up connecting after this long.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    #[default]
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl NatsConfig {
    /// The stream settings of `source`, with defaults filled in.
    pub fn resolved_stream(&self, source: &SourceConfig) -> ResolvedStream {
        let s = &source.stream;
        let d = &self.stream;
        ResolvedStream {
            name: s
                .name
                .clone()
                .unwrap_or_else(|| default_stream_name(&source.name)),
            storage: s.storage.or(d.storage).unwrap_or(StorageKind::File),
            replicas: s.replicas.or(d.replicas).unwrap_or(1),
            max_age_secs: s.max_age_secs.or(d.max_age_secs).unwrap_or(7 * 24 * 3600),
            max_bytes: s.max_bytes.or(d.max_bytes).unwrap_or(-1),
            duplicate_window_secs: s
                .duplicate_window_secs
                .or(d.duplicate_window_secs)
                .unwrap_or(SOURCE_DUPLICATE_WINDOW_SECS),
            explicit: StreamConfig {
                name: s.name.clone(),
                storage: s.storage.or(d.storage),
                replicas: s.replicas.or(d.replicas),
                max_age_secs: s.max_age_secs.or(d.max_age_secs),
                max_bytes: s.max_bytes.or(d.max_bytes),
                duplicate_window_secs: s.duplicate_window_secs.or(d.duplicate_window_secs),
            },
        }
    }
}

impl NatsConfig {
    /// Settings of a stream other than a source's (domain, dead letters, SaaS raw events) from
    /// the `[nats.stream]` defaults; `duplicate_window_secs` overrides the default window, and
    /// the retention is never shorter than the window.
    pub fn stream_named(&self, name: &str, duplicate_window_secs: Option<u64>) -> ResolvedStream {
        let d = &self.stream;
        let dup = duplicate_window_secs
            .or(d.duplicate_window_secs)
            .unwrap_or(3600);
        ResolvedStream {
            name: name.to_string(),
            storage: d.storage.unwrap_or(StorageKind::File),
            replicas: d.replicas.unwrap_or(1),
            max_age_secs: d.max_age_secs.unwrap_or(7 * 24 * 3600).max(dup),
            max_bytes: d.max_bytes.unwrap_or(-1),
            duplicate_window_secs: dup,
            // The window passed in is the bridge's default for that kind of stream, not the
            // operator's choice.
            explicit: StreamConfig {
                name: None,
                ..d.clone()
            },
        }
    }
}

/// A source stream's default duplicate window: re-sent changes are skipped by the watermark
/// (docs/durability.md), so the window is only a second guard, and its memory in nats-server
/// grows with the change rate times the window.
pub const SOURCE_DUPLICATE_WINDOW_SECS: u64 = 120;

pub fn default_stream_name(source: &str) -> String {
    format!("CDC_{}", source.to_uppercase().replace('-', "_"))
}

// Outside 9100-9999, the range of the Prometheus project's exporter port allocations (all taken
// since 2023; 9187 was postgres_exporter's), as the exporter-writing guide recommends for an
// application's own metrics endpoint.
fn default_http_listen() -> String {
    "127.0.0.1:8471".into()
}
fn default_startup_timeout_secs() -> u64 {
    120
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_subject_prefix() -> String {
    "cdc".into()
}
fn default_ack_window() -> usize {
    4096
}
fn default_heartbeat_secs() -> u64 {
    10
}
fn default_status_interval_ms() -> u64 {
    1000
}
fn default_snapshot_parallelism() -> usize {
    2
}
fn default_snapshot_chunk_rows() -> u64 {
    50_000
}
fn default_one() -> usize {
    1
}
fn default_lag_budget_bytes() -> u64 {
    1 << 30
}
fn default_lag_budget_secs() -> u64 {
    300
}
fn default_true() -> bool {
    true
}
fn default_pg_port() -> u16 {
    5432
}
