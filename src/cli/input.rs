//! Where `poolscope run`'s tasks come from: a task file, or GNU parallel's command line
//! (a command template and its input sources, or whole command lines), read whole or,
//! from one input (stdin, a file, a fifo), streamed as it arrives.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::executor::{Invocation, TaskSpec};
use crate::model::formats::gnu_parallel::{
    self as gnu, ArgumentReader, Composer, Input, Options, Source, Spread,
};
use crate::model::formats::taskfile::TaskList;

use super::RunArgs;

/// What the words after `poolscope run`'s options name.
pub enum Tasks {
    /// A task file (TOML).
    File(PathBuf),
    /// GNU parallel's line: a command (none: each argument is a command) and its inputs
    /// (none given: stdin).
    Line { maker: Maker, inputs: Vec<Input> },
    /// None of its own: a served run's tasks come from its clients (`poolscope add`).
    Clients,
}

impl Tasks {
    /// The input is one file (stdin, `:::: FILE`, `-a FILE`), read as it comes (one
    /// command per argument, or per `-n` of them; `-m` and `-X` need the whole input to
    /// spread it, several sources to combine them).
    pub fn streams(&self) -> bool {
        self.streamed_file().is_some()
    }

    /// The file [`Tasks::streams`] reads.
    pub fn streamed_file(&self) -> Option<&Path> {
        let Tasks::Line { maker, inputs } = self else {
            return None;
        };
        let one_at_a_time = matches!(maker.options.spread, Spread::One | Spread::AtMost(_));
        match inputs.as_slice() {
            [
                Input {
                    source: Source::File(path),
                    ..
                },
            ] if one_at_a_time => Some(path),
            _ => None,
        }
    }

    /// Where the tasks came from, as the run's journal names it.
    pub fn source(&self) -> String {
        match self {
            Tasks::File(path) => path.display().to_string(),
            Tasks::Line { maker, inputs }
                if maker.composer.is_whole_line()
                    && inputs.len() == 1
                    && inputs[0].source.is_stdin() =>
            {
                "commands from stdin".to_owned()
            }
            Tasks::Line { .. } => "a GNU parallel command line".to_owned(),
            Tasks::Clients => "tasks added by clients".to_owned(),
        }
    }
}

/// A word naming a task file (`FILE.toml`) rather than a command.
pub fn is_task_file(word: &str) -> bool {
    Path::new(word).extension().is_some_and(|e| e == "toml")
}

/// `-j N`, checked (none: the file's, else the CPU count).
pub fn pool_size_of(args: &RunArgs) -> Result<Option<usize>> {
    args.jobs
        .map(|jobs| {
            crate::executor::user_pool_size(jobs).map_err(|e| anyhow::anyhow!("--jobs: {e}"))
        })
        .transpose()
}

/// `args`'s words as a task file (one word naming a `.toml` file) or a command line.
pub fn tasks_of(args: &RunArgs) -> Result<Tasks> {
    if let [file] = args.words.as_slice()
        && is_task_file(file)
    {
        return Ok(Tasks::File(PathBuf::from(file)));
    }
    let colsep = args
        .colsep
        .as_deref()
        .map(|sep| {
            regex::Regex::new(sep)
                .with_context(|| format!("--colsep: {sep:?} is not a regular expression"))
        })
        .transpose()?;
    let most = match (args.max_args, args.max_replace_args) {
        (Some(_), Some(_)) => {
            bail!("-n and -N each say how many arguments a command takes: give one")
        }
        (n, m) => n.or(m),
    };
    let spread = match (most, args.xargs_context, args.multiple) {
        (_, true, true) => bail!("-m and -X each say how to fill a command: give one"),
        // -n caps what -m and -X put in one command, as in parallel.
        (most, true, false) => Spread::Context(most),
        (most, false, true) => Spread::Multiple(most),
        (Some(n), false, false) => Spread::AtMost(n),
        (None, false, false) => Spread::One,
    };
    if args.replace.as_deref() == Some("") {
        bail!("-I needs the string that stands for the argument (it is empty)");
    }
    let options = Options {
        replace: args.replace.clone(),
        spread,
        colsep,
        quote_command: args.quote,
        null: args.null,
        link: args.link,
        jobs: pool_size_of(args)?.unwrap_or_else(|| crate::executor::PoolConfig::default().size),
    };
    let split = gnu::split_words(&args.words);
    let mut inputs: Vec<Input> = args
        .arg_files
        .iter()
        .map(|path| Input {
            source: Source::File(path.clone()),
            linked: false,
        })
        .collect();
    inputs.extend(split.inputs);
    if inputs.is_empty() {
        inputs.push(Input {
            source: Source::File(PathBuf::from("-")),
            linked: false,
        });
    }
    let composer = Composer::new(&split.command, &options)?;
    Ok(Tasks::Line {
        maker: Maker {
            composer,
            options,
            timeout: None,
        },
        inputs,
    })
}

/// A command line's tasks: all of them, or (`stream`) none yet and what makes them
/// as its one input is read.
pub fn listed_or_streamed(
    tasks: Tasks,
    stream: bool,
    timeout: Option<Duration>,
) -> Result<(TaskList, Option<Streamed>)> {
    let file = tasks.streamed_file().map(Path::to_owned);
    let Tasks::Line { maker, inputs } = tasks else {
        return Ok((TaskList::default(), None));
    };
    let maker = Maker { timeout, ..maker };
    match file {
        Some(file) if stream => Ok((TaskList::default(), Some(Streamed { maker, file }))),
        _ => Ok((TaskList::from_specs(maker.all(&inputs)?), None)),
    }
}

/// Tasks made as their one input file (stdin: `-`) is read.
pub struct Streamed {
    pub maker: Maker,
    pub file: PathBuf,
}

/// Makes tasks from arguments as GNU parallel makes commands.
pub struct Maker {
    pub composer: Composer,
    pub options: Options,
    pub timeout: Option<Duration>,
}

impl Maker {
    /// The task for one command's arguments, numbered `seq` (`{#}`); a blank whole
    /// command line makes none. A task made from a template is named by its
    /// arguments (parallel's `--tag`), a whole line by itself.
    pub fn task(&self, mut values: Vec<String>, seq: u64) -> Option<TaskSpec> {
        let mut spec = if self.composer.is_whole_line() {
            // One line is the command as it was read (a million of them: no copy).
            let line = match values.len() {
                1 => values.pop().unwrap_or_default(),
                _ => self.composer.compose(&values, seq),
            };
            if line.trim().is_empty() {
                return None;
            }
            TaskSpec::shell(line)
        } else {
            let line = self.composer.compose(&values, seq);
            TaskSpec::plain(gnu::tag(&values), Invocation::Shell(line))
        };
        spec.timeout = self.timeout;
        Some(spec)
    }

    /// Arguments taken per command when streaming (`-n N`; `-N 0` takes one and
    /// inserts none).
    fn per_command(&self) -> (usize, bool) {
        match self.options.spread {
            Spread::AtMost(0) => (1, false),
            Spread::AtMost(n) => (n, true),
            Spread::One | Spread::Multiple(_) | Spread::Context(_) => (1, true),
        }
    }

    /// Reads `reader` to its end, handing each task to `take` with whether more input
    /// is already waiting (`waiting`); `take` returning false stops the reading.
    fn read<R: BufRead>(
        &self,
        reader: &mut ArgumentReader<R>,
        waiting: impl Fn(&R) -> bool,
        mut take: impl FnMut(TaskSpec, bool) -> bool,
    ) -> Result<(), gnu::InputError> {
        let (per, inserts) = self.per_command();
        let (mut values, mut taken, mut seq) = (Vec::new(), 0, 1u64);
        let mut made = |values: &mut Vec<String>, more: bool| {
            let spec = self.task(std::mem::take(values), seq);
            match spec {
                Some(spec) => {
                    seq += 1;
                    take(spec, more)
                }
                None => true,
            }
        };
        while let Some(argument) = reader.next_argument()? {
            if inserts {
                values.extend(gnu::columns(argument, self.options.colsep.as_ref()));
            }
            taken += 1;
            if taken == per {
                taken = 0;
                if !made(&mut values, waiting(reader.input())) {
                    return Ok(());
                }
            }
        }
        if taken > 0 {
            made(&mut values, false);
        }
        Ok(())
    }

    /// Every task of `inputs`, in input order (`stdin` read for `-`).
    pub fn all(&self, inputs: &[Input]) -> Result<Vec<TaskSpec>> {
        if inputs.iter().any(|i| i.source.is_stdin()) {
            stdin_is_input()?;
        }
        let stdin = || -> Box<dyn BufRead> { Box::new(io::stdin().lock()) };
        let sources = gnu::read_inputs(inputs, &self.options, stdin)?;
        let groups = gnu::combine(sources, self.options.link);
        Ok(gnu::batches(&self.composer, groups, &self.options)
            .into_iter()
            .zip(1..)
            .filter_map(|(values, seq)| self.task(values, seq))
            .collect())
    }
}

fn stdin_is_input() -> Result<()> {
    if io::stdin().is_terminal() {
        bail!(
            "no tasks given, and stdin is a terminal: give a task file, arguments \
             (CMD ::: a b c), or pipe one command (or argument) per line"
        );
    }
    Ok(())
}

/// What the stdin reader hands the run: commands as they arrive, then how input ended.
pub enum FromStdin {
    Tasks(Vec<TaskSpec>),
    /// A line that cannot be a command: nothing after it is read.
    Refused(String),
    End,
}

/// Most commands handed over at once (more wait for the next batch).
pub const STDIN_BATCH: usize = 4096;

/// Read the input (stdin, or a file: a fifo, `/dev/stdin`, an endless producer) on a
/// thread of its own, one argument (or command) per line, as a stream: a batch goes out
/// as soon as no more input is waiting, so a slow producer's first line runs at once;
/// the channel's bound holds the reader back when the run is behind. `wake` is called
/// after each batch (and the end), for a reader waiting on something else.
pub fn stream_input(
    streamed: Streamed,
    wake: impl Fn() + Send + 'static,
) -> Result<mpsc::Receiver<FromStdin>> {
    let Streamed { maker, file } = streamed;
    let (input, what) = open_input(&file)?;
    // A small file is read here at once: it cannot block, and the run's first task then
    // waits for no thread to be scheduled (on a busy start that took up to 1.5 ms).
    let small = input
        .metadata()
        .is_ok_and(|m| m.is_file() && m.len() <= READ_AT_ONCE);
    let input = io::BufReader::with_capacity(256 * 1024, input);
    let mut reader = ArgumentReader::new(input, &what, maker.options.null);
    if small {
        let (mut batches, mut batch) = (Vec::new(), Vec::new());
        let read = maker.read(
            &mut reader,
            |_| true,
            |spec, _| {
                batch.push(spec);
                if batch.len() >= STDIN_BATCH {
                    batches.push(FromStdin::Tasks(std::mem::take(&mut batch)));
                }
                true
            },
        );
        batches.push(FromStdin::Tasks(batch));
        batches.push(end_of(read));
        let (tx, rx) = mpsc::sync_channel(batches.len());
        for message in batches {
            let _ = tx.send(message);
        }
        wake();
        return Ok(rx);
    }
    let (tx, rx) = mpsc::sync_channel(2);
    std::thread::Builder::new()
        .name("poolscope-input".into())
        .spawn(move || {
            let mut batch = Vec::new();
            let read = maker.read(
                &mut reader,
                |input| !input.buffer().is_empty(),
                |spec, waiting| {
                    batch.push(spec);
                    let full = !waiting || batch.len() >= STDIN_BATCH;
                    !full || {
                        let sent = tx.send(FromStdin::Tasks(std::mem::take(&mut batch)));
                        wake();
                        sent.is_ok()
                    }
                },
            );
            let _ = tx.send(FromStdin::Tasks(batch));
            let _ = tx.send(end_of(read));
            wake();
        })
        .context("starting the input reader")?;
    Ok(rx)
}

/// Largest regular file read by [`stream_input`] before it returns (64 KiB: at most a few
/// batches of commands).
const READ_AT_ONCE: u64 = 64 * 1024;

fn end_of(read: Result<(), gnu::InputError>) -> FromStdin {
    match read {
        Ok(()) => FromStdin::End,
        Err(e) => FromStdin::Refused(e.to_string()),
    }
}

/// The input named `path` (`-`: a descriptor of stdin's own), and how errors name it.
fn open_input(path: &Path) -> Result<(File, String)> {
    use std::os::fd::AsFd;
    if path.as_os_str() == "-" {
        stdin_is_input()?;
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading stdin")?;
        return Ok((File::from(fd), "stdin".to_owned()));
    }
    let file = File::open(path).map_err(|source| gnu::InputError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok((file, path.display().to_string()))
}

/// `--dry-run`: print each command instead of running it (streamed from stdin as it
/// is read).
pub fn dry_run(tasks: &Tasks) -> Result<u8> {
    let Tasks::Line { maker, inputs } = tasks else {
        bail!("--dry-run prints the commands of a command line, not of a task file");
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut print = |spec: &TaskSpec| -> io::Result<()> {
        if let Invocation::Shell(line) = &spec.invocation {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    };
    let mut failed = None;
    if let Some(file) = tasks.streamed_file() {
        let (input, what) = open_input(file)?;
        let mut reader = ArgumentReader::new(io::BufReader::new(input), &what, maker.options.null);
        maker.read(
            &mut reader,
            |_| false,
            |spec, _| {
                failed = print(&spec).err();
                failed.is_none()
            },
        )?;
    } else {
        failed = maker
            .all(inputs)?
            .iter()
            .map(&mut print)
            .find_map(Result::err);
    }
    let failed = failed.map_or_else(|| out.flush().err(), Some);
    match failed {
        // `--dry-run | head`: the reader has what it wanted.
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Some(e) => Err(anyhow::Error::new(e).context("printing the commands")),
        None => Ok(0),
    }
}
