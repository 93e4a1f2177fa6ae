//! Provisioning the bridge's streams without harming anyone else's.
//!
//! A stream that does not exist is created with the configured settings and the ownership
//! mark ([`crate::ownership`]). One that exists is used only if it is the bridge's (marked,
//! or an older Tributary's, which gets the mark), has limits retention, and then only the
//! keys the configuration sets explicitly are applied to it, each change logged at WARN with
//! its old and new value; every other setting the stream has is kept (an operator's longer
//! `max_age`, say). Conflicts an operator must resolve come back as permanent errors.

use std::time::Duration;

use async_nats::jetstream::{self, context::GetStreamErrorKind, stream, ErrorCode};
use tracing::{info, warn};
use tributary_config::{ResolvedStream, StorageKind};

use crate::error::{create_is_transient, get_is_transient};
use crate::ownership::{self, Ownership};
use crate::NatsError;

/// One stream the bridge wants.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    pub settings: ResolvedStream,
    pub subjects: Vec<String>,
    /// Who creates it, recorded in the mark: `source:<name>`, `domain`, `sinks`, `shopify`, …
    pub component: String,
    /// The configuration key that names the stream, for the advice in errors.
    pub name_key: &'static str,
}

/// One setting of an existing stream that differs from the configuration's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

/// What to do with a stream that exists and is the bridge's.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Unmarked stream of an older Tributary: the mark is added.
    pub adopt: bool,
    /// Explicitly configured keys (and the subjects) that differ: applied.
    pub changes: Vec<Change>,
    /// Keys the configuration leaves to the default that differ from it: the stream's value is kept.
    pub kept: Vec<Change>,
    /// The stream's configuration after the plan.
    pub config: stream::Config,
}

impl Plan {
    pub fn needs_update(&self) -> bool {
        self.adopt || !self.changes.is_empty()
    }
}

/// Creates the stream, or checks and adopts the existing one (see the module documentation).
pub async fn ensure_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<stream::Stream, NatsError> {
    let name = &spec.settings.name;
    let Some(plan) = inspect_stream(js, spec).await? else {
        let created = js.create_stream(new_config(spec)).await;
        return match created {
            Ok(s) => {
                info!(stream = %name, component = %spec.component, subjects = ?spec.subjects, "created stream");
                Ok(s)
            }
            Err(e) => Err(refused(js, spec, "creating it", e).await),
        };
    };
    if plan.adopt {
        info!(stream = %name, component = %spec.component, "adopting a stream an older Tributary created: adding the ownership mark");
    }
    for k in &plan.kept {
        info!(stream = %name, key = k.key, stream_value = %k.old, default = %k.new, "keeping the stream's setting: the configuration does not set this key");
    }
    for c in &plan.changes {
        warn!(stream = %name, key = c.key, old = %c.old, new = %c.new, "changing the stream's setting to the configured value");
    }
    if plan.needs_update() {
        if let Err(e) = js.update_stream(&plan.config).await {
            return Err(refused(js, spec, "updating it", e).await);
        }
    }
    js.get_stream(name)
        .await
        .map_err(|e| NatsError::api(name, "reading its info", get_is_transient(&e.kind()), e))
}

/// The existing stream's plan; None when there is no stream of that name. Read-only.
pub async fn inspect_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<Option<Plan>, NatsError> {
    let name = &spec.settings.name;
    match js.get_stream(name).await {
        Ok(s) => plan(&s.cached_info().config, spec).map(Some),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            kind => Err(NatsError::api(
                name,
                "reading its info",
                get_is_transient(&kind),
                e,
            )),
        },
    }
}

/// Fails with [`NatsError::Overlap`] when another stream captures any of the spec's subjects.
pub async fn check_overlap(js: &jetstream::Context, spec: &StreamSpec) -> Result<(), NatsError> {
    let others = ownership::streams_covering(js, &spec.subjects, &spec.settings.name).await?;
    if others.is_empty() {
        return Ok(());
    }
    Err(overlap(spec, others, None))
}

/// What applying the configuration to the existing stream `existing` means (pure).
pub fn plan(existing: &stream::Config, spec: &StreamSpec) -> Result<Plan, NatsError> {
    let s = &spec.settings;
    let adopt = match ownership::ownership(existing, &spec.subjects, None) {
        Ownership::Marked => false,
        Ownership::Legacy => true,
        Ownership::Foreign(detail) => {
            return Err(NatsError::Foreign {
                stream: s.name.clone(),
                detail,
                fix: rename_advice(spec),
            })
        }
    };
    if existing.retention != stream::RetentionPolicy::Limits {
        return Err(NatsError::Retention {
            stream: s.name.clone(),
            retention: format!("{:?}", existing.retention).to_lowercase(),
            fix: rename_advice(spec),
        });
    }
    let mut config = existing.clone();
    ownership::mark(&mut config.metadata, &spec.component);
    let mut diff = Diff::default();
    let e = &s.explicit;
    let storage = storage_type(s.storage);
    if e.storage.is_some() && existing.storage != storage {
        return Err(NatsError::Incompatible {
            stream: s.name.clone(),
            message: format!(
                "it has {:?} storage and the configuration sets storage = {storage:?}; JetStream cannot change a \
                 stream's storage in place: set storage to match, or move the data to a new stream",
                existing.storage
            ),
        });
    }
    // Not in place: an unset storage key keeps the stream's.
    diff.differs(
        "storage",
        false,
        format!("{:?}", existing.storage),
        format!("{storage:?}"),
    );
    let replicas = (existing.num_replicas.to_string(), s.replicas.to_string());
    if diff.differs("replicas", e.replicas.is_some(), replicas.0, replicas.1) {
        config.num_replicas = s.replicas;
    }
    let max_age = (
        existing.max_age.as_secs().to_string(),
        s.max_age_secs.to_string(),
    );
    if diff.differs(
        "max_age_secs",
        e.max_age_secs.is_some(),
        max_age.0,
        max_age.1,
    ) {
        config.max_age = Duration::from_secs(s.max_age_secs);
    }
    let max_bytes = (existing.max_bytes.to_string(), s.max_bytes.to_string());
    if diff.differs("max_bytes", e.max_bytes.is_some(), max_bytes.0, max_bytes.1) {
        config.max_bytes = s.max_bytes;
    }
    let window = (
        existing.duplicate_window.as_secs().to_string(),
        s.duplicate_window_secs.to_string(),
    );
    if diff.differs(
        "duplicate_window_secs",
        e.duplicate_window_secs.is_some(),
        window.0,
        window.1,
    ) {
        config.duplicate_window = Duration::from_secs(s.duplicate_window_secs);
    }
    // A marked stream whose subjects differ: the configuration's subject prefix changed.
    let subjects = (
        format!("{:?}", sorted(&existing.subjects)),
        format!("{:?}", sorted(&spec.subjects)),
    );
    if !adopt && diff.differs("subjects", true, subjects.0, subjects.1) {
        config.subjects = spec.subjects.clone();
    }
    Ok(Plan {
        adopt,
        changes: diff.changes,
        kept: diff.kept,
        config,
    })
}

#[derive(Default)]
struct Diff {
    changes: Vec<Change>,
    kept: Vec<Change>,
}

impl Diff {
    /// Records a setting whose stream value `old` differs from the configuration's `new`;
    /// true when the configured value is to be applied (the key is set explicitly).
    fn differs(&mut self, key: &'static str, explicit: bool, old: String, new: String) -> bool {
        if old == new {
            return false;
        }
        let c = Change { key, old, new };
        if explicit {
            self.changes.push(c);
        } else {
            self.kept.push(c);
        }
        explicit
    }
}

fn sorted(v: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

fn storage_type(kind: StorageKind) -> stream::StorageType {
    match kind {
        StorageKind::File => stream::StorageType::File,
        StorageKind::Memory => stream::StorageType::Memory,
    }
}

fn new_config(spec: &StreamSpec) -> stream::Config {
    let s = &spec.settings;
    let mut config = stream::Config {
        name: s.name.clone(),
        subjects: spec.subjects.clone(),
        storage: storage_type(s.storage),
        num_replicas: s.replicas,
        max_age: Duration::from_secs(s.max_age_secs),
        max_bytes: s.max_bytes,
        duplicate_window: Duration::from_secs(s.duplicate_window_secs),
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    };
    ownership::mark(&mut config.metadata, &spec.component);
    config
}

fn rename_advice(spec: &StreamSpec) -> String {
    format!("config key `{}`", spec.name_key)
}

fn overlap(
    spec: &StreamSpec,
    others: Vec<String>,
    source: Option<jetstream::context::CreateStreamError>,
) -> NatsError {
    NatsError::Overlap {
        stream: spec.settings.name.clone(),
        subjects: spec.subjects.clone(),
        others,
        source: source.map(Into::into),
    }
}

/// A create or update the server refused, with the conflicting stream named when the
/// subjects overlap (JetStream API error 10065).
async fn refused(
    js: &jetstream::Context,
    spec: &StreamSpec,
    action: &'static str,
    e: jetstream::context::CreateStreamError,
) -> NatsError {
    let name = &spec.settings.name;
    if let jetstream::context::CreateStreamErrorKind::JetStream(j) = e.kind() {
        if j.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP {
            let others = ownership::streams_covering(js, &spec.subjects, name)
                .await
                .unwrap_or_default();
            let others = if others.is_empty() {
                vec!["(another stream; `nats stream ls` lists them)".to_string()]
            } else {
                others
            };
            return overlap(spec, others, Some(e));
        }
    }
    let transient = create_is_transient(&e.kind());
    NatsError::api(name, action, transient, e)
}

/// The stream's last message as a publisher resuming after it needs it.
#[derive(Debug, Default)]
pub struct StreamTail {
    /// The stream's last sequence (0 when nothing was ever stored).
    pub last_sequence: u64,
    /// `Nats-Msg-Id` of the message stored there, when it was sent with one.
    pub msg_id: Option<String>,
    /// That message's payload (None when the stream is empty or the message has aged out):
    /// the id is read from it when the header was not sent (`nats.msg_id_header = false`).
    pub payload: Option<bytes::Bytes>,
    /// That message's subject: a batch (`..._batch`) holds several events, the last of which
    /// is the position.
    pub subject: Option<String>,
}

/// The last sequence of the stream, and the message stored there.
pub async fn stream_tail(stream: &mut stream::Stream) -> Result<StreamTail, NatsError> {
    let name = stream.cached_info().config.name.clone();
    let info = stream.info().await.map_err(|e| NatsError::Stream {
        stream: name.clone(),
        message: e.to_string(),
    })?;
    let last_sequence = info.state.last_sequence;
    let empty = StreamTail {
        last_sequence,
        ..StreamTail::default()
    };
    if last_sequence == 0 || info.state.messages == 0 {
        return Ok(empty);
    }
    match stream.get_raw_message(last_sequence).await {
        Ok(msg) => Ok(StreamTail {
            last_sequence,
            msg_id: msg
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_string()),
            payload: Some(msg.payload),
            subject: Some(msg.subject.to_string()),
        }),
        Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(empty),
        Err(e) => Err(NatsError::Stream {
            stream: name,
            message: e.to_string(),
        }),
    }
}
