//! Entity state around one mapped change: redelivery check, version, ownership merge. The
//! step is pure (state in memory): the batch writes each entity's state once, then publishes
//! the events (see the module doc).

use prost::Message as _;
use prost_reflect::DynamicMessage;
use tracing::debug;
use tributary_proto::cdc::v1::ChangeEvent;
use tributary_proto::retail::v1::{EventMeta, SourceRef};

use super::publish::encode_event;
use super::DomainStage;
use crate::mapping::{CompiledMapping, Mapped};
use crate::metrics as m;
use crate::schema::{get_path, set_path};
use crate::state::{EntityState, LastEvent};
use crate::DomainError;

/// What one change did to its entity.
pub(super) enum Step {
    /// A new event: the state moved to its version.
    New(LastEvent),
    /// Applied before a crash: the recorded event, re-sent as is (JetStream drops it if stored).
    Resend(LastEvent),
    /// Applied and published before: nothing to do.
    Skip,
}

impl DomainStage {
    /// Applies one mapped change to `state` (version, ownership, redelivery check).
    pub(super) fn step(
        &self,
        mapping: &CompiledMapping,
        change: &ChangeEvent,
        mapped: &Mapped,
        state: &mut EntityState,
    ) -> Result<Step, DomainError> {
        let cfg = &mapping.config;
        let entity_desc = match mapping.member.kind() {
            prost_reflect::Kind::Message(d) => d,
            _ => {
                return Err(DomainError::Descriptors(format!(
                    "{} is not a message",
                    mapping.member.name()
                )))
            }
        };
        let msg_id = format!("{}/{}", change.event_id, cfg.name);
        let position = (change.commit_lsn, change.ordinal);
        match state.positions.get(&cfg.name) {
            Some(p) if *p >= position => {
                metrics::counter!(m::REDELIVERIES_SKIPPED, "source" => change.source.clone())
                    .increment(1);
                // Applied before a crash: if its write's events may be unpublished, re-send.
                return Ok(match state.sent(&msg_id) {
                    Some(last) => Step::Resend(last.clone()),
                    None => Step::Skip,
                });
            }
            _ => {}
        }
        let subject = tributary_core::partition::partitioned_subject(
            &format!("{}.{}.{}", self.cfg.subject_prefix, cfg.entity, cfg.event),
            &mapped.key,
            self.cfg.partitions,
        );
        let owned = self.ownership.get(&cfg.entity);
        let system = mapping.config.system().to_string();
        let mut entity = match (&owned, &state.merged) {
            (Some(_), Some(bytes)) => DynamicMessage::decode(entity_desc.clone(), bytes.as_slice())
                .map_err(|e| DomainError::CorruptState {
                    key: mapped.key.clone(),
                    message: e.to_string(),
                })?,
            _ => DynamicMessage::new(entity_desc.clone()),
        };
        for (path, value) in &mapped.values {
            let owner =
                owned.and_then(|rules| rules.iter().find(|(f, _)| *f == path.text).map(|(_, o)| o));
            if let Some(owner) = owner {
                // The authoritative system has written this entity: its value stands.
                if *owner != system && state.systems.contains(owner) {
                    if value.is_some() && get_path(&entity, path) != *value {
                        metrics::counter!(m::OWNED_FIELDS_KEPT, "entity" => cfg.entity.clone())
                            .increment(1);
                        debug!(field = %path.text, owner = %owner, "kept the owner's value");
                    }
                    continue;
                }
            }
            set_path(&mut entity, path, value.clone());
        }
        let version = state.version + 1;
        let meta = EventMeta {
            event_id: msg_id.clone(),
            entity: cfg.entity.clone(),
            event: cfg.event.clone(),
            entity_key: mapped.key.clone(),
            entity_version: version,
            system_of_record: system.clone(),
            event_time_micros: change.commit_time_micros,
            source_ref: Some(SourceRef {
                source: change.source.clone(),
                event_id: change.event_id.clone(),
                commit_lsn: change.commit_lsn,
                ordinal: change.ordinal,
                origin: format!("{}.{}", change.schema, change.table),
                feed_position: String::new(),
            }),
            mapping: cfg.name.clone(),
        };
        let entity_bytes = entity.encode_to_vec();
        let payload = encode_event(meta, mapping.member.number(), &entity_bytes);
        state.version = version;
        state.positions.insert(cfg.name.clone(), position);
        state.systems.insert(system);
        state.merged = owned.map(|_| entity_bytes);
        // `last`/`recent` are set when the batch writes the state (they must keep the
        // previous write's events until then: a redelivered change looks them up).
        Ok(Step::New(LastEvent {
            msg_id,
            subject,
            payload: payload.to_vec(),
            writer: format!("domain:{}", change.source),
        }))
    }
}
