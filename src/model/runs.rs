//! Where runs live: one private folder per run under a run root.
//!
//! The root defaults to the platform's data directory (`$XDG_DATA_HOME/poolscope/runs`,
//! else `~/.local/share/poolscope/runs`), never a predictable path in a shared temp
//! directory. Folders are 0700 and files 0600. A root that is a symlink, or that another
//! user owns, is refused: someone else could read or plant what poolscope writes there.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunRootError {
    #[error("no place for runs: neither XDG_DATA_HOME nor HOME is set (use --run-dir)")]
    NoHome,
    #[error("run folder {path} is a symbolic link; poolscope keeps runs only in a real folder")]
    Symlink { path: PathBuf },
    #[error(
        "run folder {path} belongs to another user (uid {owner}); poolscope keeps runs only \
         in a folder of its own user"
    )]
    NotOurs { path: PathBuf, owner: u32 },
    #[error("run folder {path} is not a folder")]
    NotADirectory { path: PathBuf },
    #[error("cannot use run folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A checked run root.
#[derive(Clone, Debug)]
pub struct RunRoot {
    path: PathBuf,
}

/// The default run root for this user.
pub fn default_root() -> Result<PathBuf, RunRootError> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty() && Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .ok_or(RunRootError::NoHome)?;
    Ok(data.join("poolscope").join("runs"))
}

impl RunRoot {
    /// Create `path` if needed (0700) and check it is a real folder of this user; a
    /// folder that others may read is made private.
    pub fn open(path: &Path) -> Result<Self, RunRootError> {
        let io = |source| RunRootError::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(io)?;
            }
            Err(e) => return Err(io(e)),
            Ok(_) => {}
        }
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if meta.file_type().is_symlink() {
            return Err(RunRootError::Symlink {
                path: path.to_owned(),
            });
        }
        if !meta.is_dir() {
            return Err(RunRootError::NotADirectory {
                path: path.to_owned(),
            });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(RunRootError::NotOurs {
                path: path.to_owned(),
                owner: meta.uid(),
            });
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        // Writable? Found now, before any task starts, not at the first output.
        let probe = path.join(format!(".poolscope-probe-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&probe)
            .map_err(io)?;
        let _ = std::fs::remove_dir(&probe);
        Ok(Self {
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs kept under the root, oldest first.
    pub fn runs(&self) -> Vec<PathBuf> {
        let mut runs: Vec<(u128, PathBuf)> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name();
                let stamp = name.to_str()?.strip_prefix("run-")?.split('-').next()?;
                Some((stamp.parse().ok()?, entry.path()))
            })
            .collect();
        runs.sort();
        runs.into_iter().map(|(_, path)| path).collect()
    }

    /// Remove the oldest runs so that at most `keep` are left and, with `max_bytes`,
    /// the newest ones kept take at most that much room (the user's policy:
    /// `--keep-runs`, `--max-runs-size`).
    pub fn prune(&self, keep: usize, max_bytes: Option<u64>) {
        let runs = self.runs();
        let mut used = 0u64;
        let mut kept = 0usize;
        // Newest first: a run stays while both limits allow it.
        for run in runs.iter().rev() {
            let size = max_bytes.map_or(0, |_| folder_size(run));
            let fits = max_bytes.is_none_or(|max| used + size <= max);
            if kept < keep && fits {
                kept += 1;
                used += size;
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(run) {
                log::warn!("cannot remove old run {}: {e}", run.display());
            }
        }
    }

    /// Recent runs that did not end cleanly (their journal has no end marker) and whose
    /// poolscope is gone: newest first, among the last `recent` runs.
    pub fn unfinished(&self, recent: usize) -> Vec<PathBuf> {
        let runs = self.runs();
        runs.iter()
            .rev()
            .take(recent)
            .filter(|dir| !ended_cleanly(dir) && !owner_alive(dir))
            .cloned()
            .collect()
    }

    /// The newest `count` runs, newest first.
    pub fn recent(&self, count: usize) -> Vec<RunSummary> {
        self.runs()
            .iter()
            .rev()
            .take(count)
            .map(|dir| RunSummary::read(dir))
            .collect()
    }

    /// A fresh folder for one run (0700), named by its local start time and this
    /// process, so that runs list in order.
    pub fn new_run(&self) -> Result<PathBuf, RunRootError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let dir = self
            .path
            .join(format!("run-{stamp}-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| RunRootError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(dir)
    }
}

/// Bytes of the files under `dir`.
fn folder_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => folder_size(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A past run as the Runs list shows it, from its folder's name and its journal's tail
/// (the journal itself is not loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    pub dir: PathBuf,
    pub started: std::time::SystemTime,
    /// Its end marker and counts; `None`: it did not end cleanly, or still runs.
    pub ended: Option<super::journal::End>,
}

impl RunSummary {
    pub fn read(dir: &Path) -> Self {
        let millis = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|n| n.split('-').next())
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(0);
        Self {
            dir: dir.to_owned(),
            started: std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis),
            ended: end_marker(dir),
        }
    }
}

/// The journal's end marker, read from the file's last line only.
fn end_marker(dir: &Path) -> Option<super::journal::End> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(dir.join(super::journal::JOURNAL_FILE)).ok()?;
    let len = file.metadata().ok()?.len();
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(len.saturating_sub(512))).ok()?;
    file.read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let last = text.trim_end().rsplit('\n').next()?;
    serde_json::from_str::<super::journal::End>(last)
        .ok()
        .filter(|e| e.end)
}

/// Whether the run's journal ends with its end marker; a folder without a journal has
/// nothing to recover.
fn ended_cleanly(dir: &Path) -> bool {
    !dir.join(super::journal::JOURNAL_FILE).exists() || end_marker(dir).is_some()
}

/// Whether the poolscope that made this run (its PID ends the folder's name) still runs:
/// its run is live, not lost.
fn owner_alive(dir: &Path) -> bool {
    let pid = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('-').next())
        .and_then(|p| p.parse::<u32>().ok());
    let Some(pid) = pid else { return false };
    if pid == std::process::id() {
        return true;
    }
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
        exe.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("poolscope"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_created_private_and_runs_inside_it_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = RunRoot::open(&dir.path().join("a/b/runs")).expect("root");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").mode() & 0o777;
        assert_eq!(mode(root.path()), 0o700);
        let run = root.new_run().expect("run");
        assert_eq!(mode(&run), 0o700);
        assert!(run.starts_with(root.path()));
    }

    #[test]
    fn pruning_keeps_the_newest_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = RunRoot::open(dir.path()).expect("root");
        for stamp in [30, 10, 20, 40] {
            std::fs::create_dir(dir.path().join(format!("run-{stamp}-1"))).expect("run");
        }
        std::fs::create_dir(dir.path().join("notes")).expect("other");
        root.prune(2, None);
        let left: Vec<String> = root
            .runs()
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["run-30-1", "run-40-1"]);
        assert!(dir.path().join("notes").exists(), "only runs are pruned");
    }

    #[test]
    fn pruning_by_size_keeps_the_newest_runs_that_fit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = RunRoot::open(dir.path()).expect("root");
        for stamp in [10, 20, 30] {
            let run = dir.path().join(format!("run-{stamp}-1"));
            std::fs::create_dir(&run).expect("run");
            std::fs::write(run.join("1.1.stdout"), vec![b'x'; 1000]).expect("output");
        }
        root.prune(100, Some(2500));
        let left: Vec<String> = root
            .runs()
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["run-20-1", "run-30-1"]);
    }

    #[test]
    fn a_readable_root_is_made_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        RunRoot::open(dir.path()).expect("root");
        let mode = std::fs::metadata(dir.path()).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_symlinked_root_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("dir");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let err = RunRoot::open(&link).expect_err("a symlink is refused");
        assert!(matches!(err, RunRootError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_root_of_another_user_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Root can give a folder away; anyone else finds one of root's ("/").
        let (path, owner) = if rustix::process::geteuid().is_root() {
            let theirs = dir.path().join("theirs");
            std::fs::create_dir(&theirs).expect("dir");
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
            (theirs, 65534)
        } else {
            (PathBuf::from("/"), 0)
        };
        let err = RunRoot::open(&path).expect_err("another user's folder is refused");
        assert!(
            matches!(err, RunRootError::NotOurs { owner: o, .. } if o == owner),
            "{err}"
        );
        assert!(err.to_string().contains("another user"), "{err}");
    }
}
