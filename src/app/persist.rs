//! What the window keeps between sessions (eframe storage).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::executor::WorkerConfig;

use super::{AppOptions, DEFAULT_KEEP_RUNS, LazyRows, PoolscopeApp, Row};

/// What eframe persists between sessions.
#[derive(Clone, Default, Serialize, Deserialize)]
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

/// Most rows kept in the state file; a longer list from a file is opened from it again.
const MAX_SAVED_ROWS: usize = 10_000;

impl PoolscopeApp {
    /// Like [`new`](Self::new), restoring the last list, pool size and recent files
    /// unless a file was given on the command line.
    pub fn with_storage(options: AppOptions, storage: Option<&dyn eframe::Storage>) -> Self {
        let restore = options.file.is_none();
        let mut app = Self::new(options);
        if let Some(saved) = storage.and_then(|s| eframe::get_value::<Saved>(s, STORAGE_KEY)) {
            // A run or joblog given to view: the saved list stays the saved list.
            if app.kept.is_some() {
                app.kept = Some(saved.clone());
            }
            app.recent = saved.recent;
            app.keep_runs = saved.keep_runs.unwrap_or(DEFAULT_KEEP_RUNS).max(1);
            app.max_runs_mb = saved.max_runs_mb;
            // A long list from a file comes back from its file.
            if let (true, true, Some(file)) = (restore, saved.rows.is_empty(), &saved.file) {
                app.open(file);
            }
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

    /// Keep the user's list as it is now while a viewed run's tasks fill the rows: what
    /// is saved stays the list, not the run viewed (a 200 MB joblog made a 440 MB
    /// state file, read again at every start).
    pub(super) fn keep_list_while_viewing(&mut self) {
        if self.kept.is_none() {
            self.kept = Some(self.to_saved());
        }
    }

    pub(super) fn to_saved(&self) -> Saved {
        if let Some(kept) = &self.kept {
            return Saved {
                recent: self.recent.clone(),
                keep_runs: Some(self.keep_runs),
                max_runs_mb: self.max_runs_mb,
                ..kept.clone()
            };
        }
        // A watched program's rows are its function calls, not commands to run again.
        let watched = self.run.as_ref().is_some_and(|r| r.watched.is_some());
        // A long list from a file is kept as its file (a million rows made a state file
        // read again at every start); a shown record's tasks are not a list to keep.
        let by_file = self.file.is_some() && self.rows.len() > MAX_SAVED_ROWS;
        Saved {
            rows: self
                .rows
                .iter()
                .filter(|_| !watched && !by_file && matches!(self.lazy, LazyRows::Made))
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

/// The file eframe keeps the window's state in, under its storage folder.
pub const STATE_FILE: &str = "app.ron";

/// Make the window's saved state private before eframe writes it: its folder 0700 and
/// `app.ron` 0600 (it holds each task's environment, tokens among them). eframe
/// truncates the file in place, so the mode set here stays. The folder is poolscope's
/// own (`~/.local/share/poolscope`): made here if missing.
pub fn make_state_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if meta.is_dir() && meta.uid() == me && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(STATE_FILE))?;
    if file.metadata()?.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_saved_state_is_private_even_when_it_was_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("poolscope");
        std::fs::create_dir(&state).expect("dir");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(state.join(super::STATE_FILE), "(poolscope: \"TOKEN=1\")").expect("write");
        std::fs::set_permissions(
            state.join(super::STATE_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        super::make_state_private(&state).expect("private");
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(super::STATE_FILE)), 0o600);
        // What eframe writes next (File::create truncates in place) keeps the mode.
        std::fs::File::create(state.join(super::STATE_FILE)).expect("rewrite");
        assert_eq!(mode(&state.join(super::STATE_FILE)), 0o600);
        let fresh = dir.path().join("new/poolscope");
        super::make_state_private(&fresh).expect("private");
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join(super::STATE_FILE)), 0o600);
    }
}
