//! The `poolscope` command line, a room per command: `run` (headless runs), `input`
//! (where their tasks come from), `served` (a headless run's clients), `records`
//! (joblog, trace), `watch`, `gui` (the window), `client` (`add`, `ls`, `status` …).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::executor::HaltPolicy;
use crate::model::store::journal::{self};

mod client;
mod gui;
mod input;
mod records;
mod run;
mod served;
mod watch;

use gui::{gui, gui_showing};
use records::{JoblogOut, TraceOut};
use run::positive_seconds;
pub use run::run;
pub use watch::watch;

/// The version and the commit it was built from (`poolscope --version`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("POOLSCOPE_COMMIT"),
    ")"
);

const RUN_EXAMPLES: &str = "Examples:
  poolscope run gzip ::: *.log                 one task per file
  find . -name '*.png' | poolscope run convert {} {.}.jpg
  poolscope run -j 8 echo {1}-{2} ::: a b ::: 1 2   every combination
  poolscope run -X echo ::: a b c              as many per command as fit
  seq 10 | sed 's/^/sleep 0.1; echo /' | poolscope run -j 4   whole command lines
  poolscope run tasks.toml -j 4                a task file";

#[derive(Parser, Debug)]
#[command(
    name = "poolscope",
    version = VERSION,
    about = "A visual, hands-on process pool",
    long_about = "A visual, hands-on process pool.\n\nWith no subcommand, opens the window (the given task file, else the last list, else the seed's Pool demo)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub gui: GuiArgs,
}

/// Options of the window (no subcommand).
#[derive(Args, Debug, Default)]
pub struct GuiArgs {
    /// Task file to open.
    pub file: Option<PathBuf>,
    /// Press Start as soon as the window opens.
    #[arg(long)]
    pub autostart: bool,
    /// Close the pool and quit when every task is over (exit status 1 if any failed).
    #[arg(long)]
    pub exit_when_done: bool,
    /// Save a PNG of the window, then quit: when the run is done, or after --screenshot-after.
    #[arg(long, value_name = "PNG")]
    pub screenshot: Option<PathBuf>,
    /// Seconds after opening at which --screenshot is taken.
    #[arg(long, value_name = "SECS")]
    pub screenshot_after: Option<f64>,
    /// --screenshot shows only the timeline.
    #[arg(long)]
    pub screenshot_timeline: bool,
    /// Watch this command line (a Python program) in the window: its pools, live.
    #[arg(long, value_name = "COMMAND")]
    pub watch: Option<String>,
    /// Keep runs (each task's output) under this folder instead of the platform's data
    /// directory (~/.local/share/poolscope/runs).
    #[arg(long, value_name = "DIR", env = "POOLSCOPE_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Window size in points, `WIDTHxHEIGHT`.
    #[arg(long, value_name = "WxH", default_value = "1280x800")]
    pub size: String,
    /// Keep a JSON file of what the window shows (panel sizes, named widgets, the run,
    /// the selected task's output), rewritten as it changes: for scripts that drive the
    /// window with real clicks and keys.
    #[arg(long, value_name = "JSON", hide = true)]
    pub state_dump: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run tasks without the window: GNU parallel's command line (`CMD ::: ARGS`, or
    /// arguments on stdin), a task file, or shell commands read from stdin.
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Run a Python program unchanged and record what its pools do (multiprocessing Pool
    /// and Process, concurrent.futures): `poolscope watch -- python3 script.py ARGS`.
    Watch(WatchArgs),
    /// Print a shell completion script: `poolscope completions bash >
    /// ~/.local/share/bash-completion/completions/poolscope` (zsh: a `_poolscope` in
    /// your $fpath; fish: ~/.config/fish/completions/poolscope.fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff): `poolscope manpage | man -l -`; `poolscope manpage
    /// run` is `poolscope run`'s own.
    Manpage {
        /// The subcommand whose page to print (none: poolscope's).
        subcommand: Option<String>,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Open a GNU parallel joblog or a saved run in the window, to see its timeline.
    View {
        /// A joblog (`parallel --joblog`, `poolscope run --joblog`), a saved run, or a
        /// run's folder (as `poolscope run` prints it).
        file: PathBuf,
    },
}

#[derive(Args, Debug, Default)]
pub struct WatchArgs {
    /// Write a Chrome trace (Perfetto) of the program's pools here when it ends.
    #[arg(long, value_name = "PATH")]
    pub trace: Option<PathBuf>,
    /// Write a GNU parallel joblog here, one line per pool task.
    #[arg(long, value_name = "PATH")]
    pub joblog: Option<PathBuf>,
    /// The program and its arguments (after --).
    #[arg(trailing_var_arg = true, required = true, num_args = 1.., value_name = "PROGRAM")]
    pub program: Vec<std::ffi::OsString>,
}

#[derive(Args, Clone, Debug, Default)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches
pub struct RunArgs {
    /// A task file (`FILE.toml`), or GNU parallel's command line: `CMD [ARGS…]` and
    /// its inputs, `::: a b c` (every combination of several), `:::+ …` (linked to the
    /// source before), `:::: FILE`, `::::+ FILE`, else stdin, one argument per line.
    /// Without a command each argument (each stdin line) is a shell command.
    #[arg(
        trailing_var_arg = true,
        value_name = "FILE.toml | CMD [ARGS]… [::: ARGS…]"
    )]
    pub words: Vec<String>,
    /// Read arguments from FILE, one per line (as `:::: FILE`; `-` is stdin; repeatable).
    #[arg(short = 'a', long = "arg-file", value_name = "FILE")]
    pub arg_files: Vec<PathBuf>,
    /// Arguments end with NUL, not a newline (`find -print0`); they may hold newlines.
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Stand for the argument with STR instead of `{}`.
    #[arg(short = 'I', value_name = "STR")]
    pub replace: Option<String>,
    /// Up to N arguments per command.
    #[arg(short = 'n', long = "max-args", value_name = "N")]
    pub max_args: Option<usize>,
    /// Up to N arguments per command, `{1}` … `{N}` each one (`-N 0`: none inserted).
    #[arg(short = 'N', long = "max-replace-args", value_name = "N")]
    pub max_replace_args: Option<usize>,
    /// As many arguments per command as the line takes (spread over the pool);
    /// `{}` is all of them.
    #[arg(short = 'm')]
    pub multiple: bool,
    /// As -m, and the word around a replacement string is repeated for each argument
    /// (`-X echo pre-{}` runs `echo pre-a pre-b`).
    #[arg(short = 'X')]
    pub xargs_context: bool,
    /// Split each argument into columns at this regular expression: `{1}`, `{2}` …
    #[arg(long, short = 'C', value_name = "REGEX")]
    pub colsep: Option<String>,
    /// Quote the command's own words too (they reach the program as given, not
    /// through the shell).
    #[arg(short = 'q', long)]
    pub quote: bool,
    /// Take the sources value by value, not in every combination (shorter ones wrap).
    #[arg(long)]
    pub link: bool,
    /// Print the commands, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stay open for tasks added from other terminals (`poolscope add`) until `poolscope
    /// close`; with no tasks of its own, stdin is not read.
    #[arg(long, conflicts_with_all = ["dry_run", "no_journal"])]
    pub serve: bool,
    /// Most tasks added from other terminals that may wait to start: past it, `poolscope
    /// add` from stdin waits for room (as a full pipe does), a single add is refused.
    #[arg(long, value_name = "N", default_value_t = crate::control::serve::MAX_WAITING)]
    pub queue_limit: usize,
    /// Pool size: most tasks running at once, 1 to 100000 [default: the file's, else the CPU count].
    #[arg(short = 'j', long = "jobs", allow_negative_numbers = true)]
    pub jobs: Option<i64>,
    /// Write a GNU parallel joblog here, one line per finished attempt.
    #[arg(long, value_name = "PATH")]
    pub joblog: Option<PathBuf>,
    /// Go on with a run that did not finish: `--resume RUN_DIR` runs its tasks that never
    /// finished (queued, cancelled, or lost when poolscope stopped) as new attempts of the
    /// same run; `--joblog FILE --resume` is GNU parallel's way: skip the tasks whose
    /// sequence number is in the joblog, run the rest of the input, append to the joblog.
    #[arg(long, num_args = 0..=1, value_name = "RUN_DIR", conflicts_with = "resume_failed")]
    pub resume: Option<Option<PathBuf>>,
    /// Like --resume, but tasks that failed run again too.
    #[arg(long, num_args = 0..=1, value_name = "RUN_DIR")]
    pub resume_failed: Option<Option<PathBuf>>,
    /// Keep runs (their journals) under this folder [default: the platform's data
    /// directory, ~/.local/share/poolscope/runs].
    #[arg(long, value_name = "DIR", env = "POOLSCOPE_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Keep no journal of this run (it cannot be resumed from its run folder).
    #[arg(long, conflicts_with_all = ["resume", "resume_failed"])]
    pub no_journal: bool,
    /// How many past runs to keep under the run folder; older ones are removed.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub keep_runs: usize,
    /// Also remove the oldest runs while all kept runs take more than this many MB.
    #[arg(long, value_name = "MB")]
    pub max_runs_size: Option<u64>,
    /// Write a Chrome trace (Perfetto, `chrome://tracing`) here when the run ends.
    #[arg(long, value_name = "PATH")]
    pub trace: Option<PathBuf>,
    /// Save every attempt's full stdout and stderr in this folder (ID.ATTEMPT.stdout).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Kill a task that runs longer than this many seconds (for tasks without their own).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub timeout: Option<f64>,
    /// Run a failing task up to this many more times.
    #[arg(long)]
    pub retries: Option<u32>,
    /// Stop on failure: never, soon,fail=N (start nothing new) or now,fail=N (kill all).
    #[arg(long, value_name = "WHEN")]
    pub halt: Option<HaltPolicy>,
    /// Prefix each output line with its task's arguments (a whole command line: the
    /// command; a task file's task: its name) and a TAB.
    #[arg(long)]
    pub tag: bool,
    /// Seconds between SIGTERM and SIGKILL when a task is killed.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub kill_grace: Option<f64>,
    /// Run tasks on persistent workers (Python's Pool: one PID runs many tasks), not a
    /// process each.
    #[arg(long)]
    pub workers: bool,
    /// With --workers: replace a worker after it ran this many tasks.
    #[arg(long, value_name = "N")]
    pub maxtasksperchild: Option<u32>,
    /// With --workers: tasks handed to a worker at once [default: Python's map default,
    /// ceil(tasks / (4 x workers))].
    #[arg(long, value_name = "N")]
    pub chunksize: Option<usize>,
    /// Print each task's output in input order, as a map returns (default with --workers).
    #[arg(short = 'k', long, conflicts_with = "unordered")]
    pub keep_order: bool,
    /// Print output as tasks produce it (default without --workers).
    #[arg(long)]
    pub unordered: bool,
    /// Where tasks run: on this machine, or on a Slurm cluster as job arrays throttled
    /// to the pool size [default: the file's `[pool] backend`, else local].
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// With --backend slurm: the partition.
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// With --backend slurm: each task's time limit, in Slurm's spelling (MM, HH:MM:SS).
    #[arg(long, value_name = "LIMIT")]
    pub time_limit: Option<String>,
    /// With --backend slurm: CPUs per task.
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// With --backend slurm: memory per task, in Slurm's spelling (500M, 4G).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// With --backend slurm: one more sbatch argument, as given (repeatable).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// With --backend slurm --workers: the host name workers on the nodes connect back
    /// to [default: this machine's name].
    #[arg(long, value_name = "HOST")]
    pub workers_host: Option<String>,
}

/// Where `poolscope run` runs its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Local,
    Slurm,
}

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // Hidden roles of this binary, started by the executor, not by users.
    let mut role_args = std::env::args_os().skip(1);
    match role_args.next().as_ref().and_then(|a| a.to_str()) {
        Some(crate::executor::task::BUILTIN_ROLE) => {
            return run_builtin(role_args.next().as_deref());
        }
        Some(crate::executor::worker::WORKER_ROLE) => {
            return ExitCode::from(match crate::executor::worker::config_from_args() {
                Ok(config) if config.relay.is_some() => {
                    crate::executor::backend::slurm::relay::main(&config)
                }
                Ok(config) => crate::executor::worker::main(&config),
                Err(e) => {
                    eprintln!("poolscope __worker: {e}");
                    2
                }
            });
        }
        _ => {}
    }
    if std::env::args_os()
        .nth(1)
        .and_then(|w| w.to_str().map(client::is_client_command))
        .unwrap_or(false)
    {
        let cli = <client::ClientCli as clap::Parser>::parse();
        return match client::main(cli.command) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("poolscope: {}", error_text(&e));
                ExitCode::from(2)
            }
        };
    }
    if std::env::args_os().nth(1).is_none_or(|w| {
        !matches!(
            w.to_str(),
            Some("completions" | "manpage" | "help" | "-h" | "--help" | "-V" | "--version")
        )
    }) {
        // The orphan guard starts before anything that may start a task, and before
        // this process has threads or more than a few pages of its own (it is a copy).
        crate::executor::watchdog::start();
    }
    let mut cli = Cli::parse();
    if let Some(Command::Run(args)) = &cli.command
        && let Some(argv) = task_file_first(args)
    {
        cli = Cli::parse_from(argv);
    }
    // `run` fails as GNU parallel does, with 255 ("other error"); 1 to 101 count
    // failed tasks.
    let error_status = match cli.command {
        Some(Command::Run(_)) => 255,
        _ => 2,
    };
    let result = match cli.command {
        Some(Command::Run(args)) => run(&args),
        Some(Command::Watch(args)) => watch(&args),
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "poolscope", &mut io::stdout());
            Ok(0)
        }
        Some(Command::Manpage { subcommand }) => manpage(subcommand.as_deref()),
        Some(Command::Client(command)) => client::main(command),
        // Check the file first so a bad one is reported on the terminal too. A run's
        // folder (as `poolscope run` prints it) opens its journal.
        Some(Command::View { file }) => if file.is_dir() {
            journal::load(&file)
                .map(|_| None)
                .map_err(anyhow::Error::from)
        } else {
            crate::model::formats::runfile::load(&file)
                .map(Some)
                .map_err(anyhow::Error::from)
        }
        .and_then(|record| {
            gui_showing(
                &GuiArgs {
                    file: Some(file),
                    ..cli.gui
                },
                record,
            )
        }),
        None => gui(&cli.gui),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // One line, and the status of a usage error (as clap's own errors), or
            // parallel's for `run`.
            eprintln!("poolscope: {}", error_text(&e));
            ExitCode::from(error_status)
        }
    }
}

/// `poolscope run FILE.toml -j 4`: the words after a task file are its options, not a
/// command line (options come first only before a command, as in GNU parallel). The
/// arguments again with the file moved last, when they need it.
fn task_file_first(args: &RunArgs) -> Option<Vec<std::ffi::OsString>> {
    let [file, rest @ ..] = args.words.as_slice() else {
        return None;
    };
    if rest.is_empty() || !input::is_task_file(file) {
        return None;
    }
    let mut arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The words are the end of the arguments.
    let at = arguments.len().checked_sub(args.words.len())?;
    let file = arguments.remove(at);
    arguments.push("--".into());
    arguments.push(file);
    Some(arguments)
}

/// `poolscope manpage [SUBCOMMAND]`: the page of poolscope or of one subcommand
/// (`poolscope-run(1)`), made from the option definitions.
fn manpage(subcommand: Option<&str>) -> Result<u8> {
    let command = <Cli as clap::CommandFactory>::command();
    let page = match subcommand {
        None => command,
        Some(name) => {
            let Some(sub) = command.find_subcommand(name) else {
                bail!("no subcommand {name:?}: run, watch, view, completions or manpage");
            };
            // Its page is named as man names it: poolscope-run(1).
            let full = format!("poolscope-{name}");
            sub.clone()
                .name(full.clone())
                .bin_name(full.replace('-', " "))
        }
    };
    clap_mangen::Man::new(page)
        .render(&mut io::stdout())
        .context("writing the manual page")?;
    Ok(0)
}

/// An error and its causes on one line, each said once (an error that quotes its
/// cause is not followed by it again), control bytes escaped and very long text cut.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    // Each line made safe to print (a file's name may hold control characters), the
    // lines kept: a list of runs reads as a list.
    text.lines()
        .take(50)
        .map(|line| crate::model::shown(line, 2000))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `poolscope __builtin JOB`: one built-in job as a process of its own.
fn run_builtin(arg: Option<&std::ffi::OsStr>) -> ExitCode {
    let job = arg
        .and_then(|a| a.to_str())
        .ok_or_else(|| "missing the job".to_owned())
        .and_then(crate::executor::Builtin::from_arg);
    match job {
        Ok(job) => {
            let code = job.run(&mut io::stdout().lock());
            let _ = io::stdout().flush();
            ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("poolscope __builtin: {e}");
            ExitCode::from(2)
        }
    }
}

/// On each SIGINT, SIGTERM or SIGHUP, raise the flag returned and then `act` on it, on
/// a thread of its own.
fn on_stop_signals(act: impl Fn(i32) + Send + 'static) -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let raised = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot watch for Ctrl-C and SIGTERM")?;
    let flag = Arc::clone(&raised);
    std::thread::Builder::new()
        .name("poolscope-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                flag.store(true, Ordering::Release);
                act(signal);
            }
        })
        .context("cannot start the thread that watches for Ctrl-C and SIGTERM")?;
    Ok(raised)
}
