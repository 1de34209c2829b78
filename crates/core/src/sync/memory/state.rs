//! The state store in memory: connectors, templates, the file ledger, leases and sync history under one lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::sync::model::{
    lease_is_free, sync_lease_name, Checkpoint, Connector, FileStatus, LedgerEntry, Reconcile,
    SyncRun,
};
use crate::sync::ports::{
    ClaimOutcome, ConnectorStore, FileLedger, LeaseStore, StartOutcome, StateError, StoredTemplate,
    SyncHistory, TemplateStore,
};
use crate::template::Template;

/// Locks a mutex; a poisoned lock (a panic in another test thread) is reported, not propagated as a panic.
fn lock<'a, T>(mutex: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>, String> {
    mutex
        .lock()
        .map_err(|_| format!("{what}: lock poisoned by a panicking thread"))
}

/// A held lease.
#[derive(Debug, Clone)]
struct Lease {
    owner: String,
    until: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct StateInner {
    /// Connectors by id (with watermark and last sync).
    connectors: BTreeMap<String, Connector>,
    /// Name → connector id: the uniqueness index.
    names: HashMap<String, String>,
    /// Connector id → file id → entry. Kept apart from `connectors`, as in DynamoDB, where a claim does not
    /// check that its connector exists.
    files: HashMap<String, BTreeMap<String, LedgerEntry>>,
    /// Connector id → runs in insertion order.
    sync_runs: HashMap<String, Vec<SyncRun>>,
    /// Template id → version → template.
    templates: BTreeMap<String, BTreeMap<u32, StoredTemplate>>,
    /// Lease name → holder.
    leases: HashMap<String, Lease>,
}

/// The [`StateStore`](crate::sync::ports::StateStore) in memory: the same semantics as the DynamoDB adapter, conditional outcomes included
/// (both pass the same contract suite). Every operation is atomic under one lock.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<StateInner>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, StateInner>, StateError> {
        lock(&self.inner, "memory state store").map_err(|e| StateError::Other {
            context: "memory state store".into(),
            source: e.into(),
        })
    }
}

fn lease_conflict(connector_id: &str, file_id: &str) -> StateError {
    StateError::Conflict {
        what: format!("lease on file {file_id} of connector {connector_id}"),
    }
}

#[async_trait]
impl ConnectorStore for MemoryStateStore {
    async fn create_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if s.names.contains_key(&connector.name) {
            return Err(StateError::NameTaken {
                name: connector.name.clone(),
            });
        }
        if s.connectors.contains_key(&connector.id) {
            return Err(StateError::Conflict {
                what: format!("connector {}", connector.id),
            });
        }
        s.names.insert(connector.name.clone(), connector.id.clone());
        s.connectors.insert(connector.id.clone(), connector.clone());
        Ok(())
    }

    async fn get_connector(&self, id: &str) -> Result<Option<Connector>, StateError> {
        Ok(self.lock()?.connectors.get(id).cloned())
    }

    async fn find_connector_by_name(&self, name: &str) -> Result<Option<Connector>, StateError> {
        let s = self.lock()?;
        Ok(s.names
            .get(name)
            .and_then(|id| s.connectors.get(id))
            .cloned())
    }

    async fn list_connectors(&self) -> Result<Vec<Connector>, StateError> {
        let mut all: Vec<Connector> = self.lock()?.connectors.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    async fn update_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(old_name) = s.connectors.get(&connector.id).map(|c| c.name.clone()) else {
            return Err(StateError::NotFound {
                what: format!("connector {}", connector.id),
            });
        };
        if old_name != connector.name {
            if s.names.contains_key(&connector.name) {
                return Err(StateError::NameTaken {
                    name: connector.name.clone(),
                });
            }
            s.names.remove(&old_name);
            s.names.insert(connector.name.clone(), connector.id.clone());
        }
        if let Some(stored) = s.connectors.get_mut(&connector.id) {
            // The watermark and last sync belong to the lister: a settings change must not roll them back.
            let watermark = stored.watermark.take();
            let last_sync = stored.last_sync.take();
            let reconcile = stored.reconcile.take();
            *stored = Connector {
                watermark,
                last_sync,
                reconcile,
                ..connector.clone()
            };
        }
        Ok(())
    }

    async fn delete_connector(&self, id: &str) -> Result<u64, StateError> {
        let mut s = self.lock()?;
        let mut removed = 0u64;
        if let Some(connector) = s.connectors.remove(id) {
            removed += 1;
            if s.names
                .get(&connector.name)
                .is_some_and(|owner| owner == id)
            {
                s.names.remove(&connector.name);
            }
        }
        removed += s.files.remove(id).map_or(0, |files| files.len() as u64);
        removed += s.sync_runs.remove(id).map_or(0, |runs| runs.len() as u64);
        s.leases.remove(&sync_lease_name(id));
        Ok(removed)
    }

    async fn advance_watermark(&self, id: &str, to: DateTime<Utc>) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(connector) = s.connectors.get_mut(id) else {
            return Err(StateError::NotFound {
                what: format!("connector {id}"),
            });
        };
        if connector.watermark.is_none_or(|w| w < to) {
            connector.watermark = Some(to);
        }
        Ok(())
    }

    async fn save_reconcile(&self, id: &str, reconcile: &Reconcile) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(connector) = s.connectors.get_mut(id) else {
            return Err(StateError::NotFound {
                what: format!("connector {id}"),
            });
        };
        connector.reconcile = Some(reconcile.clone());
        Ok(())
    }
}

#[async_trait]
impl SyncHistory for MemoryStateStore {
    async fn record_sync_run(&self, run: &SyncRun) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(connector) = s.connectors.get_mut(&run.connector_id) else {
            return Err(StateError::NotFound {
                what: format!("connector {}", run.connector_id),
            });
        };
        connector.last_sync = Some(run.clone());
        s.sync_runs
            .entry(run.connector_id.clone())
            .or_default()
            .push(run.clone());
        Ok(())
    }

    async fn list_sync_runs(
        &self,
        connector_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StateError> {
        let s = self.lock()?;
        let mut runs = s.sync_runs.get(connector_id).cloned().unwrap_or_default();
        // Stable sort, then reverse: newest first, and among equal start times the last recorded first.
        runs.sort_by_key(|r| r.started_at);
        runs.reverse();
        runs.truncate(limit);
        Ok(runs)
    }
}

#[async_trait]
impl TemplateStore for MemoryStateStore {
    async fn put_template(
        &self,
        id: &str,
        source: &str,
        template: &Template,
        now: DateTime<Utc>,
    ) -> Result<u32, StateError> {
        let mut s = self.lock()?;
        let versions = s.templates.entry(id.to_owned()).or_default();
        let version = versions.keys().next_back().copied().unwrap_or(0) + 1;
        versions.insert(
            version,
            StoredTemplate {
                id: id.to_owned(),
                version,
                source: source.to_owned(),
                template: template.clone(),
                created_at: now,
            },
        );
        Ok(version)
    }

    async fn get_template(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StateError> {
        let s = self.lock()?;
        let Some(versions) = s.templates.get(id) else {
            return Ok(None);
        };
        Ok(match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        })
    }

    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StateError> {
        let s = self.lock()?;
        Ok(s.templates
            .values()
            .filter_map(|versions| versions.values().next_back().cloned())
            .collect())
    }
}

#[async_trait]
impl LeaseStore for MemoryStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StateError> {
        let mut s = self.lock()?;
        let free = s
            .leases
            .get(name)
            .is_none_or(|l| l.owner == owner || lease_is_free(Some(l.until), now));
        if free {
            s.leases.insert(
                name.to_owned(),
                Lease {
                    owner: owner.to_owned(),
                    until: now + ttl,
                },
            );
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if s.leases.get(name).is_some_and(|l| l.owner == owner) {
            s.leases.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl FileLedger for MemoryStateStore {
    async fn get_files(
        &self,
        connector_id: &str,
        file_ids: &[String],
    ) -> Result<HashMap<String, LedgerEntry>, StateError> {
        let s = self.lock()?;
        let Some(files) = s.files.get(connector_id) else {
            return Ok(HashMap::new());
        };
        Ok(file_ids
            .iter()
            .filter_map(|id| files.get(id).map(|e| (id.clone(), e.clone())))
            .collect())
    }

    async fn get_file(
        &self,
        connector_id: &str,
        file_id: &str,
    ) -> Result<Option<LedgerEntry>, StateError> {
        Ok(self
            .lock()?
            .files
            .get(connector_id)
            .and_then(|f| f.get(file_id))
            .cloned())
    }

    async fn list_files(
        &self,
        connector_id: &str,
        status: Option<FileStatus>,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let s = self.lock()?;
        Ok(s.files
            .get(connector_id)
            .map(|files| {
                files
                    .values()
                    .filter(|e| status.is_none_or(|st| e.status == st))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn claim_file(&self, entry: &LedgerEntry) -> Result<ClaimOutcome, StateError> {
        let mut s = self.lock()?;
        let files = s
            .files
            .entry(entry.version.connector_id.clone())
            .or_default();
        let id = entry.version.file_id();
        if files.contains_key(&id) {
            return Ok(ClaimOutcome::AlreadyKnown);
        }
        files.insert(id, entry.clone());
        Ok(ClaimOutcome::Claimed)
    }

    async fn mark_queued(
        &self,
        connector_id: &str,
        file_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        {
            if entry.status == FileStatus::Claimed {
                entry.status = FileStatus::Queued;
                entry.queued_at = Some(at);
            }
        }
        Ok(())
    }

    async fn start_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<StartOutcome, StateError> {
        let mut s = self.lock()?;
        let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        else {
            return Ok(StartOutcome::Unknown);
        };
        if !entry.awaits_a_worker(now) {
            return Ok(match (entry.status, entry.lease_until) {
                (FileStatus::Processing, Some(until)) => StartOutcome::Busy(until),
                (status, _) => StartOutcome::AlreadyFinished(status),
            });
        }
        entry.status = FileStatus::Processing;
        entry.lease_owner = Some(owner.to_owned());
        entry.lease_until = Some(lease_until);
        entry.started_at = Some(now);
        entry.attempts += 1;
        Ok(StartOutcome::Started(Box::new(entry.clone())))
    }

    async fn renew_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let entry = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, file_id))?;
        entry.lease_until = Some(lease_until);
        if let Some(checkpoint) = checkpoint {
            entry.checkpoint = Some(checkpoint.clone());
        }
        Ok(())
    }

    async fn checkpoint_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let entry = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, file_id))?;
        entry.status = FileStatus::Queued;
        entry.lease_owner = None;
        entry.lease_until = None;
        if let Some(checkpoint) = checkpoint {
            entry.checkpoint = Some(checkpoint.clone());
        }
        Ok(())
    }

    async fn mark_continued(
        &self,
        connector_id: &str,
        file_id: &str,
        piece: u32,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if let Some(checkpoint) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .and_then(|e| e.checkpoint.as_mut())
            .filter(|c| c.piece == piece)
        {
            checkpoint.continued = true;
        }
        Ok(())
    }

    async fn finish_file(&self, entry: &LedgerEntry, owner: &str) -> Result<(), StateError> {
        entry.check_final()?;
        let connector_id = &entry.version.connector_id;
        let file_id = entry.version.file_id();
        let mut s = self.lock()?;
        let stored = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(&file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, &file_id))?;
        *stored = entry.clone();
        Ok(())
    }

    async fn release_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        error: &str,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let entry = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, file_id))?;
        entry.status = FileStatus::Queued;
        entry.error = Some(error.to_owned());
        entry.lease_owner = None;
        entry.lease_until = None;
        Ok(())
    }

    async fn reopen_file(
        &self,
        connector_id: &str,
        file_id: &str,
        from: FileStatus,
        replay: bool,
    ) -> Result<bool, StateError> {
        let mut s = self.lock()?;
        let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        else {
            return Ok(false);
        };
        if entry.status != from {
            return Ok(false);
        }
        entry.reopen(replay);
        Ok(true)
    }

    async fn dead_letter_file(
        &self,
        connector_id: &str,
        file_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let mut s = self.lock()?;
        let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        else {
            return Ok(false);
        };
        if !entry.awaits_a_worker(now) {
            return Ok(false);
        }
        entry.dead_lettered(error, now);
        Ok(true)
    }
}
