//! Where runs live: one private folder per run under a run root.
//!
//! The root defaults to the platform's data directory (`$XDG_DATA_HOME/poolscope/runs`,
//! else `~/.local/share/poolscope/runs`), never a predictable path in a shared temp
//! directory. Folders are 0700 and files 0600. A root that is a symlink, or that another
//! user owns, is refused: someone else could read or plant what poolscope writes there.
//! A folder poolscope did not make is never changed: one that others may write (`/tmp`,
//! a group's share) is used through a private sub-folder of this user's,
//! `poolscope-UID`.
//!
//! A run that is alive is owned: its folder's `lock` file is `flock`ed by the poolscope
//! running it for the whole run (the lock goes with the process, however it ends).
//! Cleanup never removes a locked run, and resuming one is refused with the PID that
//! holds it.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RunRootError {
    #[error("no place for runs: neither XDG_DATA_HOME nor HOME is set (use --run-dir)")]
    NoHome,
    #[error(
        "run folder {} is a symbolic link; poolscope keeps runs only in a real folder",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "run folder {} belongs to another user (uid {owner}); poolscope keeps runs only \
         in a folder of its own user",
        path.display()
    )]
    NotOurs { path: PathBuf, owner: u32 },
    #[error("run folder {} is not a folder", path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "run folder {} is a private sub-folder of a shared folder, but others may read or \
         write it (mode {mode:o}); poolscope keeps runs only in a folder of mode 700",
        path.display()
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("cannot use run folder {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the run in {} is in use by poolscope{}: it is still running; wait for it to end \
         or stop it first",
        path.display(),
        pid.map_or_else(String::new, |p| format!(" (PID {p})"))
    )]
    Busy { path: PathBuf, pid: Option<u32> },
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
    /// Create `path` if needed (0700) and check it is a real folder of this user. An
    /// existing folder that others may write (or another user's that we may write, like
    /// `/tmp`) is left as it is and runs go in a private sub-folder, `poolscope-UID`.
    pub fn open(path: &Path) -> Result<Self, RunRootError> {
        let me = rustix::process::geteuid().as_raw();
        let meta = checked_folder(path, true)?;
        let shared = meta.mode() & 0o022 != 0;
        if meta.uid() == me && !shared {
            return Ok(Self {
                path: path.to_owned(),
            });
        }
        if !shared {
            return Err(RunRootError::NotOurs {
                path: path.to_owned(),
                owner: meta.uid(),
            });
        }
        let private = path.join(format!("poolscope-{me}"));
        let meta = checked_folder(&private, false)?;
        if meta.uid() != me {
            return Err(RunRootError::NotOurs {
                path: private,
                owner: meta.uid(),
            });
        }
        if meta.mode() & 0o077 != 0 {
            return Err(RunRootError::NotPrivate {
                path: private,
                mode: meta.mode() & 0o7777,
            });
        }
        Ok(Self { path: private })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where [`RunRoot::open`] keeps runs for `path`, found without making or writing
    /// anything (a client looking for live runs); a root that does not exist yet holds
    /// none, and is given as it would be.
    pub fn existing(path: &Path) -> Result<PathBuf, RunRootError> {
        let meta = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_owned()),
            other => other.map_err(|source| RunRootError::Io {
                path: path.to_owned(),
                source,
            })?,
        };
        if meta.file_type().is_symlink() {
            return Err(RunRootError::Symlink {
                path: path.to_owned(),
            });
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.mode() & 0o022 == 0 {
            return Ok(path.to_owned());
        }
        Ok(path.join(format!("poolscope-{me}")))
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
        self.prune_except(keep, max_bytes, None);
    }

    /// [`RunRoot::prune`] as if the run folder `except` (one just made) were not there.
    pub fn prune_except(&self, keep: usize, max_bytes: Option<u64>, except: Option<&Path>) {
        let mut runs = self.runs();
        runs.retain(|run| Some(run.as_path()) != except);
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
            // A live run is never removed, and none starts while it is (its lock is
            // held until the folder is gone).
            let Ok(_lock) = RunLock::acquire(run) else {
                continue;
            };
            if let Err(e) = std::fs::remove_dir_all(run) {
                log::warn!("cannot remove old run {}: {e}", run.display());
            }
        }
    }

    /// Recent runs that did not end cleanly (their journal has no end marker) and that
    /// no poolscope holds (nor this one made): newest first, among the last `recent`
    /// runs.
    pub fn unfinished(&self, recent: usize) -> Vec<PathBuf> {
        let runs = self.runs();
        runs.iter()
            .rev()
            .take(recent)
            .filter(|dir| !ended_cleanly(dir) && !is_live(dir) && !made_here(dir))
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
    /// process, so that runs list in order; locked for this run from the start, so no
    /// cleanup can take it.
    pub fn new_run(&self) -> Result<RunLock, RunRootError> {
        let mut stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        loop {
            let dir = self
                .path
                .join(format!("run-{stamp}-{}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return RunLock::acquire(&dir),
                // Two runs of this process in one millisecond (two windows' threads).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => stamp += 1,
                // Not writable: said of the root, before any task starts.
                Err(source) => {
                    return Err(RunRootError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
    }
}

/// `path` as a real folder (created 0700 when `create` and it is missing).
fn checked_folder(path: &Path, create: bool) -> Result<std::fs::Metadata, RunRootError> {
    let io = |source| RunRootError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(create).mode(0o700);
            match builder.create(path) {
                // Another poolscope made it a moment ago.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                other => other.map_err(io)?,
            }
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
    Ok(meta)
}

/// The name of the lock file in each run's folder.
pub const LOCK_FILE: &str = "lock";

/// A run's folder held by this process for as long as the run lives: an exclusive
/// `flock` on its `lock` file, which names the holder's PID. The kernel drops it when
/// the process ends, however it ends, so a stale lock is simply taken over.
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    _file: File,
}

impl RunLock {
    /// Take `dir`'s lock, or say which poolscope holds it.
    pub fn acquire(dir: &Path) -> Result<Self, RunRootError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| RunRootError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        if !try_flock(&file, true).map_err(io)? {
            return Err(RunRootError::Busy {
                path: dir.to_owned(),
                pid: holder(&mut file),
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self {
            dir: dir.to_owned(),
            _file: file,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `flock` without waiting; whether it was taken.
fn try_flock(file: &File, exclusive: bool) -> std::io::Result<bool> {
    use rustix::fs::FlockOperation;
    let operation = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match rustix::fs::flock(file, operation) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The PID the holder wrote in its lock file (it may not have written it yet).
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Whether this process made the run (its PID ends the folder's name): a run of this
/// session, on screen or closed by the user in it, is not one to recover.
fn made_here(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit('-').next())
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id())
}

/// Whether a poolscope holds `dir`'s run now (its run is live, not lost).
pub fn is_live(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    try_flock(&file, false).is_ok_and(|taken| !taken)
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
    /// Where its list came from, how it ran.
    pub about: super::journal::RunAbout,
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
            about: super::journal::RunAbout::read(dir).unwrap_or_default(),
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
        assert_eq!(mode(run.dir()), 0o700);
        assert!(run.dir().starts_with(root.path()));
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
    fn a_shared_root_keeps_its_mode_and_runs_go_in_a_private_sub_folder() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").mode() & 0o7777;
        for shared in [0o1777, 0o777, 0o770] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(shared))
                .expect("chmod");
            let root = RunRoot::open(dir.path()).expect("root");
            assert_eq!(
                mode(dir.path()),
                shared,
                "the shared folder is left as it was"
            );
            let me = rustix::process::geteuid().as_raw();
            assert_eq!(root.path(), dir.path().join(format!("poolscope-{me}")));
            assert_eq!(mode(root.path()), 0o700);
            let run = root.new_run().expect("run");
            assert!(run.dir().starts_with(root.path()));
        }
    }

    #[test]
    fn a_readable_root_of_our_own_is_used_as_it_is() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let root = RunRoot::open(dir.path()).expect("root");
        assert_eq!(root.path(), dir.path());
        let mode = std::fs::metadata(dir.path()).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o755, "poolscope did not make it: its mode stays");
        let run = root.new_run().expect("run");
        let mode = std::fs::metadata(run.dir()).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o700, "each run is private");
    }

    #[test]
    fn a_live_run_is_neither_pruned_nor_taken_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = RunRoot::open(dir.path()).expect("root");
        let live = root.new_run().expect("live run");
        let old = root.new_run().expect("ended run");
        let old_dir = old.dir().to_owned();
        drop(old);
        assert!(is_live(live.dir()));
        assert!(!is_live(&old_dir));
        let err = RunLock::acquire(live.dir()).expect_err("a live run is taken once");
        assert!(
            matches!(err, RunRootError::Busy { pid: Some(p), .. } if p == std::process::id()),
            "{err}"
        );
        assert!(
            err.to_string().contains("in use by poolscope (PID"),
            "{err}"
        );
        root.prune(0, None);
        assert!(live.dir().is_dir(), "the live run is kept");
        assert!(!old_dir.exists(), "the ended run is removed");
        let dir_of_live = live.dir().to_owned();
        drop(live);
        RunLock::acquire(&dir_of_live).expect("a run whose holder is gone is taken over");
    }

    #[test]
    fn one_root_opened_from_many_threads_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runs");
        let runs: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        let root = RunRoot::open(&path).expect("no collision opening the root");
                        root.new_run()
                            .expect("no collision making a run")
                            .dir()
                            .to_owned()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let unique: std::collections::HashSet<_> = runs.iter().collect();
        assert_eq!(unique.len(), 16, "each run has a folder of its own");
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
