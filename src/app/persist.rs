//! What the window keeps between sessions (eframe storage).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::executor::WorkerConfig;

use super::{AppOptions, DEFAULT_KEEP_RUNS, PoolscopeApp, Row};

/// What eframe persists between sessions.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Saved {
    rows: Vec<Row>,
    pool_size: Option<usize>,
    recent: Vec<PathBuf>,
    file: Option<PathBuf>,
    workers: Option<WorkerConfig>,
    slurm: Option<crate::executor::backend::slurm::SlurmOptions>,
    chunk_size: Option<usize>,
    #[serde(default)]
    keep_runs: Option<usize>,
    #[serde(default)]
    max_runs_mb: u64,
}

pub(super) const STORAGE_KEY: &str = "poolscope";

impl PoolscopeApp {
    /// Like [`new`](Self::new), restoring the last list, pool size and recent files
    /// unless a file was given on the command line.
    pub fn with_storage(options: AppOptions, storage: Option<&dyn eframe::Storage>) -> Self {
        let restore = options.file.is_none();
        let mut app = Self::new(options);
        if let Some(saved) = storage.and_then(|s| eframe::get_value::<Saved>(s, STORAGE_KEY)) {
            app.recent = saved.recent;
            app.keep_runs = saved.keep_runs.unwrap_or(DEFAULT_KEEP_RUNS).max(1);
            app.max_runs_mb = saved.max_runs_mb;
            if restore && !saved.rows.is_empty() {
                app.rows = saved.rows;
                app.file = saved.file;
                if let Some(size) = saved.pool_size {
                    app.pool_size = size.max(1);
                }
                app.workers = saved.workers;
                app.slurm = saved.slurm;
                app.chunk_size = saved.chunk_size;
            }
        }
        app
    }

    pub(super) fn to_saved(&self) -> Saved {
        // A watched program's rows are its function calls, not commands to run again.
        let watched = self.run.as_ref().is_some_and(|r| r.watched.is_some());
        Saved {
            rows: self
                .rows
                .iter()
                .filter(|_| !watched)
                .map(|r| Row {
                    draft: r.draft.clone(),
                    task: None,
                })
                .collect(),
            pool_size: Some(self.pool_size),
            recent: self.recent.clone(),
            file: self.file.clone(),
            workers: self.workers.clone(),
            slurm: self.slurm.clone(),
            chunk_size: self.chunk_size,
            keep_runs: Some(self.keep_runs),
            max_runs_mb: self.max_runs_mb,
        }
    }
}
