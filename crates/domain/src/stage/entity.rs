//! Entity state around one mapped change: redelivery check, version, ownership merge; then
//! the event is published. State is written before the event (see the module doc).

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
use crate::state::LastEvent;
use crate::DomainError;

impl DomainStage {
    /// Applies entity state (version, ownership, redelivery check) and publishes the event.
    pub(super) async fn publish_mapped(
        &self,
        mapping: &CompiledMapping,
        change: &ChangeEvent,
        mapped: Mapped,
    ) -> Result<(), DomainError> {
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
        let subject = format!("{}.{}.{}", self.cfg.subject_prefix, cfg.entity, cfg.event);
        let position = (change.commit_lsn, change.ordinal);
        let owned = self.ownership.get(&cfg.entity);
        let system = mapping.config.system().to_string();
        loop {
            let (mut state, revision) = self.state.load_entity(&cfg.entity, &mapped.key).await?;
            match state.positions.get(&cfg.name) {
                Some(p) if *p > position => {
                    metrics::counter!(m::REDELIVERIES_SKIPPED, "source" => change.source.clone())
                        .increment(1);
                    return Ok(());
                }
                Some(p) if *p == position => {
                    // Applied before a crash: re-send the same event; JetStream drops it if stored.
                    metrics::counter!(m::REDELIVERIES_SKIPPED, "source" => change.source.clone())
                        .increment(1);
                    if let Some(last) = state.last.filter(|l| l.msg_id == msg_id) {
                        self.publish(&last.subject, &last.msg_id, last.payload.into())
                            .await?;
                    }
                    return Ok(());
                }
                _ => {}
            }
            let mut entity = match (&owned, &state.merged) {
                (Some(_), Some(bytes)) => {
                    DynamicMessage::decode(entity_desc.clone(), bytes.as_slice()).map_err(|e| {
                        DomainError::CorruptState {
                            key: mapped.key.clone(),
                            message: e.to_string(),
                        }
                    })?
                }
                _ => DynamicMessage::new(entity_desc.clone()),
            };
            for (path, value) in &mapped.values {
                let owner = owned
                    .and_then(|rules| rules.iter().find(|(f, _)| *f == path.text).map(|(_, o)| o));
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
            state.systems.insert(system.clone());
            state.merged = owned.map(|_| entity_bytes);
            state.last = Some(LastEvent {
                msg_id: msg_id.clone(),
                subject: subject.clone(),
                payload: payload.to_vec(),
            });
            // State first, then the event: after a crash in between, the redelivered change
            // finds its position applied and re-sends `last` (see above).
            if !self
                .state
                .save_entity(&cfg.entity, &mapped.key, &state, revision)
                .await?
            {
                continue;
            }
            self.publish(&subject, &msg_id, payload).await?;
            metrics::counter!(m::EVENTS, "mapping" => cfg.name.clone()).increment(1);
            return Ok(());
        }
    }
}
