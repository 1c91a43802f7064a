//! The engine under test, on a fresh database, and helpers shared by the bodies.

use std::path::PathBuf;
use std::sync::Arc;

use shotline_store::testing::TestDatabase;
use shotline_store::{Admission, Engine, JobRecord, NewJob, StoreSelection, UserRecord};

/// A fresh store of one engine.
pub struct Harness {
    pub engine: Arc<dyn Engine>,
    selection: StoreSelection,
    // Dropped last: the database outlives the engine.
    _place: Place,
}

enum Place {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(#[allow(dead_code)] TestDatabase),
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("shotline.db");
        let selection = StoreSelection::Sqlite {
            path,
            queue_capacity: 1024,
        };
        Self::open(selection, Place::Sqlite(dir)).await
    }

    pub async fn postgres() -> Self {
        let db = TestDatabase::new();
        let selection = StoreSelection::Postgres {
            url: db.url().to_owned(),
            allow_synchronous_commit_off: false,
        };
        Self::open(selection, Place::Postgres(db)).await
    }

    async fn open(selection: StoreSelection, place: Place) -> Self {
        let engine = shotline_store::open(&selection)
            .await
            .unwrap_or_else(|e| panic!("open {selection:?}: {e}"));
        Self {
            engine,
            selection,
            _place: place,
        }
    }

    /// The same database opened again, as a second server process would.
    pub async fn another_process(&self) -> Arc<dyn Engine> {
        shotline_store::open(&self.selection).await.unwrap()
    }

    pub async fn user(&self, name: &str) -> UserRecord {
        self.engine
            .add_user(name, None, "hash", false, T0)
            .await
            .unwrap()
    }

    /// Admits a job (no key, no limit to speak of) and returns it.
    pub async fn job(&self, user: &UserRecord, id: &str, backend: &str) -> JobRecord {
        match self
            .engine
            .admit_job(new_job(user.id, id, backend, None), 1_000_000)
            .await
            .unwrap()
        {
            Admission::Admitted(j) => j,
            other => panic!("expected {id} admitted, got {other:?}"),
        }
    }
}

pub const T0: &str = "2026-11-22T10:00:00.000Z";
pub const T1: &str = "2026-11-22T10:00:01.000Z";
pub const T2: &str = "2026-11-22T10:00:02.000Z";
pub const T3: &str = "2026-11-22T10:00:03.000Z";

pub fn new_job(user_id: i64, id: &str, backend: &str, key: Option<&str>) -> NewJob {
    NewJob {
        id: id.to_owned(),
        user_id,
        backend: backend.to_owned(),
        qobj_id: Some(format!("q-{id}")),
        priority: 0,
        tags: vec!["t".to_owned()],
        idempotency_key: key.map(str::to_owned),
        body: format!("{{\"job\":\"{id}\"}}"),
        submitted_at: T0.to_owned(),
    }
}
