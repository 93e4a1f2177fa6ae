//! Mapping one change, with its parent row (a child mapping's `parent`): from the rows this
//! task stored, else from KV, else after waiting for it.

use std::time::{Duration, Instant};

use tributary_proto::cdc::v1::ChangeEvent;

use super::batch::Cache;
use super::{decode, DomainStage};
use crate::mapping::{CompiledMapping, Mapped, RowView};
use crate::state::StateStore;
use crate::{DomainError, MapError};

impl DomainStage {
    /// Outer Err: transient (retry the message); inner Err: this change cannot be mapped.
    pub(super) async fn map_one(
        &self,
        cache: &mut Cache,
        mapping: &CompiledMapping,
        change: &ChangeEvent,
        waited: &mut bool,
    ) -> Result<Result<Mapped, MapError>, DomainError> {
        let Some(row) = RowView::of(change) else {
            return Ok(Err(MapError::NoRow));
        };
        let parent_change = match mapping.parent_key(&row) {
            Err(e) => return Ok(Err(e)),
            Ok(None) => None,
            Ok(Some(key)) => match self
                .wait_for_parent(cache, mapping, &change.source, &key, waited)
                .await?
            {
                Ok(c) => Some(c),
                Err(e) => return Ok(Err(e)),
            },
        };
        let parent_row = parent_change.as_ref().and_then(RowView::of);
        Ok(mapping.apply(&row, parent_row.as_ref()))
    }

    /// The parent row: from the rows this task stored, else from KV, else waits for it.
    async fn wait_for_parent(
        &self,
        cache: &mut Cache,
        mapping: &CompiledMapping,
        source: &str,
        key: &[String],
        waited: &mut bool,
    ) -> Result<Result<ChangeEvent, MapError>, DomainError> {
        let Some(parent) = &mapping.config.parent else {
            return Ok(Err(MapError::NoRow));
        };
        let k = StateStore::row_key(source, &parent.table, parent.parent_columns(), key);
        let started = Instant::now();
        let wait = Duration::from_millis(self.cfg.parent_wait_ms);
        loop {
            let found = match cache.rows.get(&k) {
                Some(bytes) => Some(bytes.clone()),
                None => {
                    let bytes = self.state.get_row_at(&k).await?;
                    if let Some(bytes) = &bytes {
                        cache.rows.insert(k.clone(), bytes.clone());
                    }
                    bytes
                }
            };
            if let Some(bytes) = found {
                return Ok(decode::change(&self.schemas, bytes)
                    .await?
                    .map_err(|e| MapError::Decode(format!("parent row: {e}"))));
            }
            if started.elapsed() >= wait {
                return Ok(Err(MapError::MissingParent {
                    table: parent.table.clone(),
                    key: key.join(":"),
                    waited_ms: self.cfg.parent_wait_ms,
                }));
            }
            *waited = true;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
