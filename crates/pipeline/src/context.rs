//! The context a source's sessions share, and the errors that name the source.
//! Its own module so that the session, the snapshot and the supervisor use it without
//! importing the module that runs sessions.

use std::sync::Arc;
use std::time::Duration;

use tributary_config::{ResolvedStream, SourceConfig};
use tributary_nats::NatsError;
use tributary_postgres::{ConnectParams, PgError};

use crate::snapshot_state::StateError;
use crate::PipelineError;

/// Everything a source session needs; shared by its successive sessions.
pub struct SourceContext {
    pub config: SourceConfig,
    pub params: ConnectParams,
    pub js: async_nats::jetstream::Context,
    pub nats: async_nats::Client,
    pub stream: ResolvedStream,
    pub subject_prefix: String,
    pub ack_window: usize,
    /// `nats.msg_id_header`: send `Nats-Msg-Id` with every change.
    pub msg_id_header: bool,
    pub confirm_delay: Duration,
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// The lease's fence in HA mode ([`tributary_core::Fence::always`] otherwise): checked
    /// before every batch handed to the publisher and every position confirmed.
    pub fence: tributary_core::FenceCell,
    /// HA mode: a walsender still holding the slot belongs to a replica that lost the lease;
    /// it is terminated (once this replica's fence is valid) instead of waited out.
    pub take_over_slot: bool,
    /// Relation schemas already stored (`schema = "reference"`), shared by the sessions,
    /// snapshots and backfills of the source.
    pub schemas: Arc<crate::schemas::SchemaWriter>,
}

impl SourceContext {
    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn pg_err(&self, error: PgError) -> PipelineError {
        PipelineError::Postgres {
            source_name: self.name().to_string(),
            error,
        }
    }

    pub(crate) fn nats_err(&self, error: NatsError) -> PipelineError {
        PipelineError::Nats {
            source_name: self.name().to_string(),
            error,
        }
    }

    pub(crate) fn state_err(&self, error: StateError) -> PipelineError {
        PipelineError::SnapshotState {
            source_name: self.name().to_string(),
            error,
        }
    }

    pub(crate) fn schema_err(&self, error: tributary_nats::schemas::SchemaError) -> PipelineError {
        PipelineError::Schema {
            source_name: self.name().to_string(),
            error,
        }
    }

    /// Stores `info`'s schema before any event naming it is published (a no-op inline).
    pub(crate) async fn ensure_schema(
        &self,
        info: &crate::relations::RelationInfo,
    ) -> Result<(), PipelineError> {
        self.schemas
            .ensure(&self.js, self.stream.replicas, info.description.as_deref())
            .await
            .map_err(|e| self.schema_err(e))
    }

    pub(crate) fn fatal(&self, message: impl Into<String>) -> PipelineError {
        PipelineError::Fatal {
            source_name: self.name().to_string(),
            message: message.into(),
        }
    }
}
