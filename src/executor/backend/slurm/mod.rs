//! Talking to Slurm: a task list goes out as one job array throttled to the pool size
//! (`sbatch --array=0-(N-1)%P`), each element runs poolscope's launcher (which records its
//! own start and end to the nanosecond in the run folder), and the array's state comes
//! back from `scontrol -o show job`. Controls map onto Slurm: resize is
//! `scontrol update ArrayTaskThrottle`, kill one is `scancel J_i`, terminate `scancel J`,
//! pause and resume hold and release the pending elements.
//!
//! These are the pieces the slurm backend is built from; each is tested against a real
//! single-node Slurm (`scripts/slurm_up.sh`) where one runs.

mod backend;
pub mod relay;

pub use backend::SlurmBackend;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The run folder's subfolder that holds its arrays.
const FOLDER: &str = "slurm";

/// Where a run keeps its Slurm arrays: a folder every node can see, the run's own.
pub fn folder_of(run_dir: &Path) -> PathBuf {
    run_dir.join(FOLDER)
}

/// The launcher each array element runs (written to the run folder at submission).
pub const LAUNCHER: &str = include_str!("../../../../assets/slurm/launcher.sh");

/// What a user may ask of Slurm for every task (task file `[slurm]`, `poolscope run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    /// Slurm's own spelling: `MM`, `HH:MM:SS`, `D-HH`.
    pub time_limit: Option<String>,
    pub cpus_per_task: Option<u32>,
    /// Slurm's own spelling: `500M`, `4G`.
    pub mem: Option<String>,
    /// Further `sbatch` arguments, as given.
    pub extra: Vec<String>,
    /// Workers on the cluster connect to this host (default: this machine's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers_host: Option<String>,
}

impl SlurmOptions {
    /// The `sbatch` arguments these options stand for.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(partition) = &self.partition {
            args.push(format!("--partition={partition}"));
        }
        if let Some(limit) = &self.time_limit {
            args.push(format!("--time={limit}"));
        }
        if let Some(cpus) = self.cpus_per_task {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(mem) = &self.mem {
            args.push(format!("--mem={mem}"));
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "{command} is not installed (is this a Slurm login node? scripts/slurm_up.sh starts a local one)"
    )]
    Missing { command: &'static str },
    /// Slurm's own words, as it said them.
    #[error("{command} failed: {message}")]
    Refused {
        command: &'static str,
        message: String,
    },
    #[error("{command} answered something unexpected: {text:?}")]
    Unexpected { command: &'static str, text: String },
    #[error("cannot write the run folder {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where an array's files live in its run folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayDir(pub PathBuf);

impl ArrayDir {
    pub fn task_script(&self, index: u64) -> PathBuf {
        self.0.join("tasks").join(format!("{index}.sh"))
    }
    pub fn stdout(&self, index: u64) -> PathBuf {
        self.0.join("out").join(format!("{index}.stdout"))
    }
    pub fn stderr(&self, index: u64) -> PathBuf {
        self.0.join("out").join(format!("{index}.stderr"))
    }
    fn launcher(&self) -> PathBuf {
        self.0.join("launcher.sh")
    }

    /// Write the launcher and each task's script (element `i` runs the `i`-th command).
    pub fn prepare(
        &self,
        commands: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<(), SlurmError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SlurmError::Io { path, source }
        };
        let tasks = self.0.join("tasks");
        std::fs::create_dir_all(&tasks).map_err(io(&tasks))?;
        std::fs::write(self.launcher(), LAUNCHER).map_err(io(&self.launcher()))?;
        for (i, command) in commands.into_iter().enumerate() {
            let path = self.task_script(i as u64);
            std::fs::write(&path, format!("{}\n", command.as_ref())).map_err(io(&path))?;
        }
        Ok(())
    }

    /// Note, beside its scripts, which job the array went out as and which task (by the
    /// run's own number) each element runs: [`submitted`] reads it back for a resumed
    /// run.
    pub fn note_submitted(
        &self,
        job: u64,
        tasks: impl IntoIterator<Item = super::super::TaskId>,
    ) -> std::io::Result<()> {
        let listed = tasks
            .into_iter()
            .enumerate()
            .map(|(index, task)| format!("{index} {}\n", task.0))
            .collect::<Vec<_>>()
            .concat();
        std::fs::write(self.0.join(ELEMENTS_FILE), listed)?;
        std::fs::write(self.0.join(JOB_FILE), format!("{job}\n"))
    }

    /// What [`Self::note_submitted`] noted: the job and (element index, task) pairs.
    fn submitted(&self) -> Option<(u64, Vec<(u64, u64)>)> {
        let job = std::fs::read_to_string(self.0.join(JOB_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let elements = std::fs::read_to_string(self.0.join(ELEMENTS_FILE)).ok()?;
        let pairs = elements
            .lines()
            .filter_map(|line| {
                let mut words = line
                    .split_whitespace()
                    .filter_map(|w| w.parse::<u64>().ok());
                Some((words.next()?, words.next()?))
            })
            .collect();
        Some((job, pairs))
    }

    /// What element `index`'s launcher recorded so far.
    pub fn stamp(&self, index: u64) -> LauncherStamp {
        let read = |name: String| std::fs::read_to_string(self.0.join("stamps").join(name)).ok();
        let start = read(format!("{index}.start")).and_then(|text| {
            let mut words = text.split_whitespace();
            let ns = words.next()?.parse::<u64>().ok()?;
            let host = words.next()?.to_owned();
            let pid = words.next()?.parse().ok()?;
            Some((Duration::from_nanos(ns), host, pid))
        });
        let end = read(format!("{index}.end")).and_then(|text| {
            let mut words = text.split_whitespace();
            let ns = words.next()?.parse::<u64>().ok()?;
            let code = words.next()?.parse().ok()?;
            Some((Duration::from_nanos(ns), code))
        });
        LauncherStamp { start, end }
    }
}

/// An element submitted earlier (by a run now resumed): its array and index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub job: u64,
    pub dir: ArrayDir,
    pub index: u64,
    /// Bytes of its stdout and stderr files already recorded (an attempt followed again
    /// goes on reading from there).
    pub read: [u64; 2],
}

/// What a run's Slurm folder says it submitted, by original task: for each, the element
/// submitted last. Each array folder keeps its `job` id and its `elements` (one line per
/// element: index and original task number).
pub fn submitted(folder: &Path) -> std::collections::HashMap<super::super::TaskId, Submitted> {
    let mut arrays: Vec<(u64, PathBuf)> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_prefix("array-")?.parse().ok()?;
            Some((number, entry.path()))
        })
        .collect();
    arrays.sort();
    let mut found = std::collections::HashMap::new();
    for (_, path) in arrays {
        let dir = ArrayDir(path);
        let Some((job, elements)) = dir.submitted() else {
            continue;
        };
        for (index, task) in elements {
            let dir = dir.clone();
            found.insert(
                super::super::TaskId(task),
                Submitted {
                    job,
                    dir,
                    index,
                    read: [0, 0],
                },
            );
        }
    }
    found
}

/// Whether the run in `run_dir` sent its tasks to a Slurm cluster (they may run on
/// there without poolscope).
pub fn went_to_cluster(run_dir: &Path) -> bool {
    folder_of(run_dir).is_dir()
}

/// What the run in `run_dir` submitted to the cluster, by its own task number (nothing
/// for a local run): what was running of it when poolscope stopped may run there still.
pub fn on_cluster(run_dir: &Path) -> std::collections::HashMap<super::super::TaskId, Submitted> {
    submitted(&folder_of(run_dir))
}

const OPTIONS_FILE: &str = "options.json";
const JOB_FILE: &str = "job";
const ELEMENTS_FILE: &str = "elements";

/// How a resumed run goes on, when the run went to Slurm (its folder has `slurm/`): with
/// the same options, following the elements it submitted (`on_cluster`, as
/// [`on_cluster`] read them) for the tasks it resumes (`originals`, in the resuming
/// executor's order) and that may still run there (`goes_on`: not those cancelled
/// before they started, whose elements are gone), rather than submitting them again.
/// `already_read`: for an attempt that goes on, the stdout and stderr bytes its run
/// already recorded.
#[allow(clippy::implicit_hasher)] // the map becomes `SlurmSettings::reattach` as it is
pub fn resumed(
    run_dir: &Path,
    mut on_cluster: std::collections::HashMap<super::super::TaskId, Submitted>,
    originals: Vec<super::super::TaskId>,
    goes_on: impl Fn(super::super::TaskId) -> bool,
    already_read: impl Fn(super::super::TaskId) -> [u64; 2],
) -> Option<super::super::SlurmSettings> {
    if !went_to_cluster(run_dir) {
        return None;
    }
    let folder = folder_of(run_dir);
    let resuming: std::collections::HashSet<_> = originals.iter().collect();
    on_cluster.retain(|task, _| resuming.contains(task) && goes_on(*task));
    for (task, element) in &mut on_cluster {
        element.read = already_read(*task);
    }
    Some(super::super::SlurmSettings {
        options: saved_options(&folder),
        folder,
        originals,
        reattach: on_cluster,
    })
}

/// The options a run's arrays were submitted with (a resumed run submits with the same).
fn saved_options(folder: &Path) -> SlurmOptions {
    std::fs::read(folder.join(OPTIONS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn save_options(folder: &Path, options: &SlurmOptions) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)?;
    std::fs::write(folder.join(OPTIONS_FILE), serde_json::to_vec(options)?)
}

/// A launcher's record of one element: (since the epoch, host, launcher PID) at start,
/// (since the epoch, exit status) at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LauncherStamp {
    pub start: Option<(Duration, String, u32)>,
    pub end: Option<(Duration, i32)>,
}

/// The `sbatch` arguments that submit `count` tasks as one array, at most `throttle` at
/// once, each running the launcher on `dir`.
pub fn sbatch_args(
    dir: &ArrayDir,
    count: u64,
    throttle: usize,
    job_name: &str,
    options: &SlurmOptions,
) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_owned(),
        format!("--array=0-{}%{}", count.saturating_sub(1), throttle.max(1)),
        format!("--job-name={job_name}"),
        // The launcher keeps each task's output; Slurm's own file holds only what the
        // launcher itself might say.
        format!("--output={}", dir.0.join("slurm-%a.log").display()),
        format!(
            "--chdir={}",
            std::env::current_dir().unwrap_or_default().display()
        ),
    ];
    args.extend(options.sbatch_args());
    args.push(dir.launcher().display().to_string());
    args.push(dir.0.display().to_string());
    args
}

fn run(command: &'static str, args: &[String]) -> Result<String, SlurmError> {
    use std::os::unix::process::CommandExt;
    // In a group of its own: a signal to its caller's group (a relay being stopped) must
    // not cut an `sbatch` short after Slurm took the job but before it said its id.
    let output = Command::new(command)
        .args(args)
        .process_group(0)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                SlurmError::Missing { command }
            } else {
                SlurmError::Refused {
                    command,
                    message: e.to_string(),
                }
            }
        })?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(SlurmError::Refused { command, message });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// How many elements an array may have here (`MaxArraySize` in `scontrol show config`;
/// Slurm's default, 1001, when it cannot be read).
pub fn max_array_size() -> usize {
    run("scontrol", &["show".into(), "config".into()])
        .ok()
        .and_then(|text| config_value(&text, "MaxArraySize"))
        .unwrap_or(1001)
        .max(1)
}

/// A number from `scontrol show config` (`Key = Value` lines).
fn config_value(text: &str, key: &str) -> Option<usize> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().parse().ok())?
    })
}

/// Submit; the array's job id.
pub fn submit(args: &[String]) -> Result<u64, SlurmError> {
    let text = run("sbatch", args)?;
    // `--parsable`: "JOBID" or "JOBID;CLUSTER".
    text.trim()
        .split(';')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or(SlurmError::Unexpected {
            command: "sbatch",
            text,
        })
}

/// Every element of array `job` that Slurm still knows.
pub fn show_job(job: u64) -> Result<Vec<Element>, SlurmError> {
    show(job, None)
}

/// `scontrol show job J` (every element Slurm still knows) or `J_i` (one element, or
/// the pending remainder it is still part of).
pub fn show(job: u64, index: Option<u64>) -> Result<Vec<Element>, SlurmError> {
    run(
        "scontrol",
        &["-o".into(), "show".into(), "job".into(), target(job, index)],
    )
    .map(|text| parse_show_job(&text))
}

/// `scancel J` (the whole array) or `scancel J_i` (one element).
pub fn cancel(job: u64, index: Option<u64>) -> Result<(), SlurmError> {
    run("scancel", &[target(job, index)]).map(drop)
}

/// How Slurm names a job (`J`) or one element of an array (`J_i`).
pub fn target(job: u64, index: Option<u64>) -> String {
    index.map_or_else(|| job.to_string(), |i| format!("{job}_{i}"))
}

/// How many elements may run at once from now on.
pub fn set_throttle(job: u64, throttle: usize) -> Result<(), SlurmError> {
    run(
        "scontrol",
        &[
            "update".into(),
            format!("JobId={job}"),
            format!("ArrayTaskThrottle={}", throttle.max(1)),
        ],
    )
    .map(drop)
}

/// Hold (pause) or release (resume) the elements not started yet (a user hold, which the
/// user may release, even as root).
pub fn hold(job: u64, held: bool) -> Result<(), SlurmError> {
    run(
        "scontrol",
        &[
            if held { "uhold" } else { "release" }.into(),
            job.to_string(),
        ],
    )
    .map(drop)
}

/// One line of `scontrol -o show job`: an element, or the record of the elements still
/// pending (`ArrayTaskId=2-9%4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub job_id: u64,
    pub array_job: u64,
    /// `Some(i)` for a single element; `None` for the pending remainder.
    pub index: Option<u64>,
    /// The pending remainder's indices as Slurm writes them (`3-9%4`, `2,5-7`).
    pub pending: Option<String>,
    pub state: String,
    pub reason: String,
    /// (exit code, signal) as Slurm reports them (`ExitCode=3:0`).
    pub exit: (i32, i32),
    pub node: Option<String>,
}

/// The elements in `scontrol -o show job` output (one job per line, `Key=Value` fields).
pub fn parse_show_job(text: &str) -> Vec<Element> {
    text.lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            };
            let job_id = field("JobId")?.parse().ok()?;
            let array_job = field("ArrayJobId")
                .and_then(|v| v.parse().ok())
                .unwrap_or(job_id);
            let task_ids = field("ArrayTaskId");
            let index = task_ids.and_then(|v| v.parse().ok());
            let pending = task_ids.filter(|_| index.is_none()).map(str::to_owned);
            let exit = field("ExitCode")
                .and_then(|v| v.split_once(':'))
                .and_then(|(c, s)| Some((c.parse().ok()?, s.parse().ok()?)))
                .unwrap_or((0, 0));
            let node = field("NodeList").filter(|n| !n.is_empty() && *n != "(null)");
            Some(Element {
                job_id,
                array_job,
                index,
                pending,
                state: field("JobState")?.to_owned(),
                reason: field("Reason").unwrap_or("None").to_owned(),
                exit,
                node: node.map(str::to_owned),
            })
        })
        .collect()
}

impl Element {
    /// Whether this record speaks for element `index`: it is that element, or the pending
    /// remainder holds it. A remainder written in a way not understood here is taken to
    /// hold it (an element is never given up for a record not read).
    pub fn covers(&self, index: u64) -> bool {
        if let Some(own) = self.index {
            return own == index;
        }
        let Some(ids) = &self.pending else {
            return false;
        };
        let ids = ids.split('%').next().unwrap_or_default();
        let holds = |part: &str| -> Option<bool> {
            let (range, step) = part.split_once(':').unwrap_or((part, "1"));
            let step: u64 = step.parse().ok()?;
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            Some((first..=last).contains(&index) && (index - first).is_multiple_of(step.max(1)))
        };
        ids.split(',').any(|part| holds(part).unwrap_or(true))
    }
}

/// How an element ended, in poolscope's terms; `None` while it waits or runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlurmEnd {
    Exited(i32),
    Signaled(i32),
    /// Past its time limit (`TIMEOUT`).
    TimedOut,
    /// `scancel`led (by poolscope or by hand).
    Cancelled,
    /// Ended by the cluster: `NODE_FAIL`, `PREEMPTED`, `OUT_OF_MEMORY`, `BOOT_FAIL`,
    /// `DEADLINE`.
    Scheduler(String),
}

pub fn end_of(element: &Element) -> Option<SlurmEnd> {
    let (code, signal) = element.exit;
    // `CANCELLED by 0` is how scontrol spells a cancel; the state word comes first.
    let state = element.state.split_whitespace().next().unwrap_or_default();
    match state {
        "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING" | "SUSPENDED" | "REQUEUED"
        | "RESIZING" | "SIGNALING" | "STAGE_OUT" => None,
        "COMPLETED" => Some(SlurmEnd::Exited(0)),
        "FAILED" if signal != 0 => Some(SlurmEnd::Signaled(signal)),
        "FAILED" => Some(SlurmEnd::Exited(code)),
        "TIMEOUT" => Some(SlurmEnd::TimedOut),
        "CANCELLED" => Some(SlurmEnd::Cancelled),
        other => Some(SlurmEnd::Scheduler(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW_JOB: &str = "JobId=1 ArrayJobId=1 ArrayTaskId=2-3%2 ArrayTaskThrottle=2 JobName=job.sh JobState=PENDING Reason=JobArrayTaskLimit Dependency=(null) ExitCode=0:0 NodeList=(null)
JobId=3 ArrayJobId=1 ArrayTaskId=1 ArrayTaskThrottle=2 JobName=job.sh JobState=RUNNING Reason=None ExitCode=0:0 NodeList=vm
JobId=4 ArrayJobId=1 ArrayTaskId=0 JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 NodeList=vm
JobId=5 ArrayJobId=1 ArrayTaskId=4 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 NodeList=vm
JobId=6 ArrayJobId=1 ArrayTaskId=5 JobState=FAILED Reason=NonZeroExitCode ExitCode=0:9 NodeList=vm
";

    #[test]
    fn scontrol_lines_become_elements_and_outcomes() {
        let elements = parse_show_job(SHOW_JOB);
        assert_eq!(elements.len(), 5);
        assert_eq!(elements[0].index, None, "the pending remainder");
        assert_eq!(elements[0].reason, "JobArrayTaskLimit");
        assert_eq!(elements[0].node, None);
        assert_eq!(elements[1].index, Some(1));
        assert_eq!(elements[1].node.as_deref(), Some("vm"));
        let ends: Vec<Option<SlurmEnd>> = elements.iter().map(end_of).collect();
        assert_eq!(
            ends,
            [
                None,
                None,
                Some(SlurmEnd::Exited(3)),
                Some(SlurmEnd::TimedOut),
                Some(SlurmEnd::Signaled(9)),
            ]
        );
        let other = Element {
            state: "NODE_FAIL".into(),
            ..elements[2].clone()
        };
        assert_eq!(
            end_of(&other),
            Some(SlurmEnd::Scheduler("NODE_FAIL".into()))
        );
    }

    #[test]
    fn an_element_is_covered_by_its_own_record_or_by_the_pending_remainder_holding_it() {
        let text = "JobId=9 ArrayJobId=9 ArrayTaskId=1,4-8:2%1 JobState=PENDING\n\
                    JobId=10 ArrayJobId=9 ArrayTaskId=0 JobState=RUNNING\n";
        let said = parse_show_job(text);
        let covered: Vec<u64> = (0..10)
            .filter(|&i| said.iter().any(|s| s.covers(i)))
            .collect();
        // 2 and 3 were cancelled while pending: no record speaks for them any more.
        assert_eq!(covered, [0, 1, 4, 6, 8]);
        let odd = parse_show_job("JobId=9 ArrayJobId=9 ArrayTaskId=what JobState=PENDING\n");
        assert!(
            odd[0].covers(3),
            "a remainder not understood is taken to hold it"
        );
    }

    #[test]
    fn the_largest_array_is_read_from_the_clusters_config() {
        let text = "MaxArraySize            = 8\nMaxJobCount             = 10000\n";
        assert_eq!(config_value(text, "MaxArraySize"), Some(8));
        assert_eq!(config_value(text, "MaxJobCount"), Some(10000));
        assert_eq!(config_value(text, "Nothing"), None);
    }

    #[test]
    fn the_array_is_throttled_to_the_pool_and_carries_the_options() {
        let dir = ArrayDir(PathBuf::from("/runs/r1/slurm-0"));
        let options = SlurmOptions {
            partition: Some("debug".into()),
            time_limit: Some("00:05:00".into()),
            cpus_per_task: Some(2),
            mem: Some("1G".into()),
            extra: vec!["--qos=low".into()],
            workers_host: None,
        };
        let args = sbatch_args(&dir, 20, 4, "poolscope", &options);
        assert!(args.contains(&"--array=0-19%4".to_owned()));
        for wanted in [
            "--partition=debug",
            "--time=00:05:00",
            "--cpus-per-task=2",
            "--mem=1G",
            "--qos=low",
        ] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} in {args:?}");
        }
        assert_eq!(args.last().map(String::as_str), Some("/runs/r1/slurm-0"));
    }
}
