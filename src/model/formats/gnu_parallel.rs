//! GNU parallel's command line, for the subset people type every day: a command template,
//! input sources (`::: a b`, `:::: FILE`, linked with `:::+` / `::::+`), replacement
//! strings (`{}` `{.}` `{/}` `{//}` `{/.}` `{#}` `{%}` `{1}` `{-1}` `{2.}` …), arguments
//! per command (`-n`, `-N`, `-m`, `-X`), `--colsep`, and the shell quoting parallel gives
//! every argument — so `poolscope run gzip ::: *.log` means what `parallel gzip ::: *.log`
//! means. Which command each argument makes is decided here; running it is not.

use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Where one input source's arguments come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `::: a b c`: the words themselves.
    Words(Vec<String>),
    /// `:::: FILE` or `-a FILE`: one argument per line (`-` is stdin).
    File(PathBuf),
}

impl Source {
    pub fn is_stdin(&self) -> bool {
        matches!(self, Source::File(path) if path.as_os_str() == "-")
    }
}

/// One input source, and whether it is linked to the one before it (`:::+`, `::::+`):
/// linked sources go together value by value instead of in every combination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub source: Source,
    pub linked: bool,
}

/// The words after `poolscope run`'s options, split as parallel splits them: the command
/// and its arguments, then the input sources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub command: Vec<String>,
    pub inputs: Vec<Input>,
}

/// Split `words` at `:::`, `:::+`, `::::` and `::::+`.
pub fn split_words(words: &[String]) -> Split {
    let mut split = Split::default();
    // What the words after the last separator are: arguments, or files.
    let mut reading: Option<(bool, bool)> = None; // (files, next is linked)
    for word in words {
        let separator = match word.as_str() {
            ":::" => Some((false, false)),
            ":::+" => Some((false, true)),
            "::::" => Some((true, false)),
            "::::+" => Some((true, true)),
            _ => None,
        };
        match (separator, &mut reading) {
            (Some((files, linked)), _) => {
                if !files {
                    split.inputs.push(Input {
                        source: Source::Words(Vec::new()),
                        linked,
                    });
                }
                reading = Some((files, linked));
            }
            (None, None) => split.command.push(word.clone()),
            (None, Some((true, linked))) => {
                // Each file is a source of its own; only the first after `::::+` is linked.
                split.inputs.push(Input {
                    source: Source::File(PathBuf::from(word)),
                    linked: *linked,
                });
                *linked = false;
            }
            (None, Some((false, _))) => {
                if let Some(Input {
                    source: Source::Words(values),
                    ..
                }) = split.inputs.last_mut()
                {
                    values.push(word.clone());
                }
            }
        }
    }
    split
}

/// How many arguments make one command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spread {
    /// One input line (or one combination of the sources) per command.
    #[default]
    One,
    /// `-n N` / `-N N`: up to N per command (`-N 0`: one is read, none inserted).
    AtMost(usize),
    /// `-m`: as many as the command line takes (at most N with `-n N`); `{}` is all
    /// of them.
    Multiple(Option<usize>),
    /// `-X`: as `-m`, and the word around a replacement string is repeated for each.
    Context(Option<usize>),
}

/// parallel's options that shape the commands.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `-I STR`: the string that stands for the argument, instead of `{}`.
    pub replace: Option<String>,
    pub spread: Spread,
    /// `--colsep REGEX`: each input line is split into columns, `{1}` `{2}` …
    pub colsep: Option<regex::Regex>,
    /// `-q`: the command's own words are quoted too (a shell does not read them).
    pub quote_command: bool,
    /// `-0`: inputs end with NUL, not a newline (they may hold newlines).
    pub null: bool,
    /// `--link`: every source goes with the others value by value (shorter ones wrap).
    pub link: bool,
    /// Pool size: `-m` and `-X` spread short input over this many commands.
    pub jobs: usize,
}

/// Longest command line `-m` and `-X` fill (parallel reads the system's limit, about
/// 128 KiB on Linux; this is the same as `poolscope run`'s own limit for a line).
pub const MAX_LINE: usize = 128 * 1024;

/// What one replacement string does to an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    Whole,
    /// `{.}`: without its extension.
    NoExtension,
    /// `{/}`: the file name without its folder.
    Basename,
    /// `{//}`: the folder (as `dirname`).
    Dirname,
    /// `{/.}`: the file name without folder and extension.
    BasenameNoExtension,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// An argument: all of them (`None`), or the Nth (`{2}`; negative from the end).
    Arg(Option<i64>, Edit),
    /// `{#}`: the task's number in the input, from 1.
    Seq,
    /// `{%}`: the slot the task runs in, from 1 (known only when it starts).
    Slot,
}

/// A command template, ready to make one command per group of arguments.
#[derive(Clone, Debug)]
pub struct Composer {
    /// The template's pieces, split where whitespace separates words (for `-X`).
    words: Vec<Vec<Piece>>,
    /// Whitespace between the words, as typed.
    gaps: Vec<String>,
    /// No command: each argument is itself the command (not quoted).
    whole: bool,
    /// No replacement string: the arguments are appended.
    append: bool,
    spread: Spread,
}

/// The shell-quoting parallel gives an argument (for sh, bash and the like): words of
/// `[-_.+a-zA-Z0-9/]` as they are, the empty word as `''`, anything else in single
/// quotes with `'` as `'"'"'`.
pub fn quote(arg: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_.+/".contains(&b);
    if arg.is_empty() {
        return "''".to_owned();
    }
    if arg.bytes().all(plain) {
        return arg.to_owned();
    }
    let mut quoted = String::with_capacity(arg.len() + 2);
    quoted.push('\'');
    quoted.push_str(&arg.replace('\'', "'\"'\"'"));
    quoted.push('\'');
    // parallel drops the '' a leading or trailing quote leaves.
    let quoted = quoted.strip_prefix("''").unwrap_or(&quoted);
    let quoted = quoted.strip_suffix("''").unwrap_or(quoted);
    quoted.to_owned()
}

/// The template's replacement strings, parsed at `text[at..]` (which starts with `{`):
/// the piece and its length, or `None` when it is plain text.
fn replacement(text: &str, at: usize, replace: Option<&str>) -> Option<(Piece, usize)> {
    let rest = &text[at..];
    if let Some(custom) = replace
        && rest.starts_with(custom)
    {
        return Some((Piece::Arg(None, Edit::Whole), custom.len()));
    }
    let end = rest.find('}')?;
    let inner = &rest[1..end];
    let len = end + 1;
    let edit_of = |s: &str| match s {
        "" => Some(Edit::Whole),
        "." => Some(Edit::NoExtension),
        "/" => Some(Edit::Basename),
        "//" => Some(Edit::Dirname),
        "/." => Some(Edit::BasenameNoExtension),
        _ => None,
    };
    match inner {
        "#" => return Some((Piece::Seq, len)),
        "%" => return Some((Piece::Slot, len)),
        // `-I STR` takes the place of `{}` (the other forms stay).
        "" if replace.is_some() => return None,
        _ => {}
    }
    let digits = inner.strip_prefix('-').unwrap_or(inner);
    let number_len = digits.bytes().take_while(u8::is_ascii_digit).count();
    let sign_len = inner.len() - digits.len();
    if number_len == 0 {
        if sign_len > 0 {
            return None;
        }
        return edit_of(inner).map(|edit| (Piece::Arg(None, edit), len));
    }
    let number: i64 = inner[..sign_len + number_len].parse().ok()?;
    if number == 0 {
        return None;
    }
    let edit = edit_of(&inner[sign_len + number_len..])?;
    Some((Piece::Arg(Some(number), edit), len))
}

fn pieces(text: &str, replace: Option<&str>) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut at = 0;
    while at < text.len() {
        let starts =
            replace.is_some_and(|r| text[at..].starts_with(r)) || text[at..].starts_with('{');
        if starts && let Some((piece, len)) = replacement(text, at, replace) {
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            at += len;
            continue;
        }
        let ch = text[at..].chars().next().unwrap_or_default();
        literal.push(ch);
        at += ch.len_utf8();
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    pieces
}

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "{0}: perl expressions in replacement strings ({{= … =}}) are GNU parallel's own; \
         poolscope does not run perl"
    )]
    Perl(String),
}

impl Composer {
    /// The template `command` (parallel's command words; none: each argument is a
    /// command).
    pub fn new(command: &[String], options: &Options) -> Result<Self, TemplateError> {
        if let Some(word) = command.iter().find(|w| w.contains("{=")) {
            return Err(TemplateError::Perl(word.clone()));
        }
        let replace = options.replace.as_deref();
        // The command is one line: its words joined by a space, as parallel joins them
        // (a shell reads it again); with -q, each word's own text is quoted.
        let mut line_pieces: Vec<Piece> = Vec::new();
        for (i, word) in command.iter().enumerate() {
            if i > 0 {
                line_pieces.push(Piece::Text(" ".to_owned()));
            }
            for piece in pieces(word, replace) {
                line_pieces.push(match piece {
                    Piece::Text(text) if options.quote_command => Piece::Text(quote(&text)),
                    other => other,
                });
            }
        }
        // Words for -X: split the text pieces at whitespace.
        let (mut words, mut gaps, mut word) = (Vec::new(), Vec::new(), Vec::new());
        for piece in line_pieces {
            let Piece::Text(text) = piece else {
                word.push(piece);
                continue;
            };
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
                if word_len > 0 {
                    word.push(Piece::Text(rest[..word_len].to_owned()));
                }
                rest = &rest[word_len..];
                let gap_len = rest
                    .find(|c: char| !c.is_whitespace())
                    .unwrap_or(rest.len());
                if gap_len > 0 {
                    gaps.push(rest[..gap_len].to_owned());
                    words.push(std::mem::take(&mut word));
                }
                rest = &rest[gap_len..];
            }
        }
        words.push(word);
        let uses = |p: &Piece| !matches!(p, Piece::Text(_));
        let append = !words.iter().flatten().any(uses);
        Ok(Self {
            whole: command.is_empty(),
            append,
            words,
            gaps,
            spread: options.spread,
        })
    }

    /// Each argument is the command itself (no command was given).
    pub fn is_whole_line(&self) -> bool {
        self.whole
    }

    /// The command for the arguments `values` (one group: a line's columns, a
    /// combination of the sources, or `-n` lines of them, in order), task number `seq`.
    pub fn compose(&self, values: &[String], seq: u64) -> String {
        if self.whole {
            return values.join(" ");
        }
        let mut line = String::new();
        for (i, word) in self.words.iter().enumerate() {
            if i > 0 {
                line.push_str(&self.gaps[i - 1]);
            }
            let per_argument = matches!(self.spread, Spread::Context(_))
                && word.iter().any(|p| matches!(p, Piece::Arg(None, _)));
            if per_argument {
                for (n, value) in values.iter().enumerate() {
                    if n > 0 {
                        line.push(' ');
                    }
                    Self::fill(&mut line, word, std::slice::from_ref(value), seq);
                }
            } else {
                Self::fill(&mut line, word, values, seq);
            }
        }
        if self.append && !values.is_empty() {
            if !line.is_empty() {
                line.push(' ');
            }
            push_quoted(&mut line, values.iter().map(String::as_str));
        }
        line
    }

    fn fill(line: &mut String, word: &[Piece], values: &[String], seq: u64) {
        for piece in word {
            match piece {
                Piece::Text(text) => line.push_str(text),
                Piece::Seq => line.push_str(&seq.to_string()),
                // The slot is the pool's, known when the task starts: the shell reads it
                // from the environment poolscope gives every task (counted from 0).
                Piece::Slot => line.push_str("$((POOLSCOPE_SLOT+1))"),
                Piece::Arg(None, edit) => {
                    push_quoted(line, values.iter().map(|v| edited(v, *edit)));
                }
                Piece::Arg(Some(n), edit) => {
                    let at = if *n > 0 {
                        usize::try_from(n - 1).ok()
                    } else {
                        values.len().checked_sub(n.unsigned_abs() as usize)
                    };
                    // A position past the arguments is empty (not even quoted).
                    if let Some(value) = at.and_then(|at| values.get(at)) {
                        line.push_str(&quote(edited(value, *edit)));
                    }
                }
            }
        }
    }
}

fn push_quoted<'a>(line: &mut String, values: impl Iterator<Item = &'a str>) {
    for (i, value) in values.enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&quote(value));
    }
}

fn edited(value: &str, edit: Edit) -> &str {
    let without_extension = |v: &'_ str| -> usize {
        match v.rfind('.') {
            Some(dot) if !v[dot..].contains('/') => dot,
            _ => v.len(),
        }
    };
    match edit {
        Edit::Whole => value,
        Edit::NoExtension => &value[..without_extension(value)],
        Edit::Basename => value.rsplit('/').next().unwrap_or(value),
        Edit::BasenameNoExtension => {
            let base = value.rsplit('/').next().unwrap_or(value);
            &base[..without_extension(base)]
        }
        Edit::Dirname => dirname(value),
    }
}

/// POSIX `dirname` (Perl's `File::Basename::dirname`, which parallel uses).
fn dirname(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "." } else { "/" };
    }
    match trimmed.rfind('/') {
        None => ".",
        Some(slash) => {
            let dir = trimmed[..slash].trim_end_matches('/');
            if dir.is_empty() { "/" } else { dir }
        }
    }
}

/// Why the inputs cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot open input file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} line {line} is longer than {} KiB (it starts \"{start}\"): a command \
         line that long is refused, as xargs refuses it",
        MAX_LINE / 1024
    )]
    TooLong {
        what: String,
        line: usize,
        start: String,
    },
    #[error("{what} line {line} is not UTF-8 text (it starts \"{start}\")")]
    NotText {
        what: String,
        line: usize,
        start: String,
    },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },
}

/// Each argument of `source` split into its columns (`--colsep`, trimmed as parallel
/// trims them), or alone.
pub fn columns(value: String, colsep: Option<&regex::Regex>) -> Vec<String> {
    match colsep {
        Some(sep) => sep.split(&value).map(|c| c.trim().to_owned()).collect(),
        None => vec![value],
    }
}

/// Reads one input's arguments from `input` (a file or stdin), one per line (per NUL
/// with `-0`); `what` names it in errors.
pub fn read_arguments(
    input: impl BufRead,
    what: &str,
    options: &Options,
) -> Result<Vec<Vec<String>>, InputError> {
    let mut groups = Vec::new();
    let mut reader = ArgumentReader::new(input, what, options.null);
    while let Some(value) = reader.next_argument()? {
        groups.push(columns(value, options.colsep.as_ref()));
    }
    Ok(groups)
}

/// Arguments read one at a time (for stdin, as it arrives).
pub struct ArgumentReader<R> {
    input: R,
    what: String,
    end: u8,
    line: usize,
    buffer: Vec<u8>,
}

impl<R: BufRead> ArgumentReader<R> {
    pub fn new(input: R, what: &str, null: bool) -> Self {
        Self {
            input,
            what: what.to_owned(),
            end: if null { 0 } else { b'\n' },
            line: 0,
            buffer: Vec::new(),
        }
    }

    /// The next argument, or `None` at the end. One longer than [`MAX_LINE`] (or input
    /// with no end at all, `< /dev/zero`) is refused at once rather than read into
    /// memory; one that is not UTF-8 is refused too, each by its line number.
    pub fn next_argument(&mut self) -> Result<Option<String>, InputError> {
        self.buffer.clear();
        self.line += 1;
        let read = std::io::Read::take(&mut self.input, MAX_LINE as u64 + 1)
            .read_until(self.end, &mut self.buffer)
            .map_err(|source| InputError::Read {
                what: self.what.clone(),
                source,
            })?;
        if read == 0 {
            return Ok(None);
        }
        let start = |bytes: &[u8]| {
            crate::model::shown(&String::from_utf8_lossy(&bytes[..bytes.len().min(60)]), 60)
        };
        if self.buffer.last() == Some(&self.end) {
            self.buffer.pop();
        } else if self.buffer.len() > MAX_LINE {
            return Err(InputError::TooLong {
                what: self.what.clone(),
                line: self.line,
                start: start(&self.buffer),
            });
        }
        match String::from_utf8(std::mem::take(&mut self.buffer)) {
            Ok(text) => Ok(Some(text)),
            Err(e) => Err(InputError::NotText {
                what: self.what.clone(),
                line: self.line,
                start: start(e.as_bytes()),
            }),
        }
    }

    /// The input it reads (to see whether more is already buffered).
    pub fn input(&self) -> &R {
        &self.input
    }
}

/// One source's arguments as read: each a group of values (its columns, or itself).
#[derive(Clone, Debug, Default)]
pub struct Arguments {
    pub groups: Vec<Vec<String>>,
    /// Linked to the source before (`:::+`).
    pub linked: bool,
}

/// Every source's arguments, in order; `stdin` is read for a source named `-`.
pub fn read_inputs(
    inputs: &[Input],
    options: &Options,
    mut stdin: impl FnMut() -> Box<dyn BufRead>,
) -> Result<Vec<Arguments>, InputError> {
    inputs
        .iter()
        .map(|input| {
            let groups = match &input.source {
                Source::Words(words) => words
                    .iter()
                    .map(|w| columns(w.clone(), options.colsep.as_ref()))
                    .collect(),
                source if source.is_stdin() => read_arguments(stdin(), "stdin", options)?,
                Source::File(path) => read_file(path, options)?,
            };
            Ok(Arguments {
                groups,
                linked: input.linked,
            })
        })
        .collect()
}

fn read_file(path: &Path, options: &Options) -> Result<Vec<Vec<String>>, InputError> {
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.to_owned(),
        source,
    })?;
    read_arguments(
        std::io::BufReader::new(file),
        &path.display().to_string(),
        options,
    )
}

/// The sources combined as parallel combines them: every combination, the first
/// source changing slowest; linked sources (`:::+`) go value by value, the shortest
/// deciding how many; with `--link` all are linked and shorter ones wrap around.
pub fn combine(sources: Vec<Arguments>, link_all: bool) -> Vec<Vec<String>> {
    if sources.is_empty() {
        return Vec::new();
    }
    if link_all {
        let longest = sources.iter().map(|s| s.groups.len()).max().unwrap_or(0);
        if sources.iter().any(|s| s.groups.is_empty()) {
            return Vec::new();
        }
        return (0..longest)
            .map(|i| {
                sources
                    .iter()
                    .flat_map(|s| s.groups[i % s.groups.len()].iter().cloned())
                    .collect()
            })
            .collect();
    }
    // Linked runs become one source whose groups are the zipped values.
    let mut groups_of: Vec<Vec<Vec<String>>> = Vec::new();
    for Arguments { groups, linked } in sources {
        match groups_of.last_mut() {
            Some(previous) if linked => {
                let len = previous.len().min(groups.len());
                previous.truncate(len);
                for (joined, group) in previous.iter_mut().zip(groups) {
                    joined.extend(group);
                }
            }
            _ => groups_of.push(groups),
        }
    }
    let mut combined: Vec<Vec<String>> = vec![Vec::new()];
    for groups in groups_of {
        combined = combined
            .iter()
            .flat_map(|head| {
                groups.iter().map(move |group| {
                    let mut whole = head.clone();
                    whole.extend(group.iter().cloned());
                    whole
                })
            })
            .collect();
    }
    combined
}

/// The groups of arguments each command gets: one each, `-n N` at a time, or with `-m`
/// / `-X` as many as fill a line (spread over the pool when all fit in one, as
/// parallel spreads them).
pub fn batches(
    composer: &Composer,
    groups: Vec<Vec<String>>,
    options: &Options,
) -> Vec<Vec<String>> {
    let joined = |chunk: &[Vec<String>]| chunk.iter().flatten().cloned().collect::<Vec<_>>();
    match options.spread {
        Spread::One => groups,
        Spread::AtMost(0) => groups.iter().map(|_| Vec::new()).collect(),
        Spread::AtMost(n) => groups.chunks(n).map(joined).collect(),
        Spread::Multiple(most) | Spread::Context(most) => {
            if groups.is_empty() {
                return Vec::new();
            }
            let most = most.unwrap_or(usize::MAX).max(1);
            // What each group adds to a line (its words and a space), so lines are
            // filled in one pass.
            let base = composer.compose(&[], 1).len();
            let costs: Vec<usize> = groups
                .iter()
                .map(|g| composer.compose(g, 1).len().saturating_sub(base) + 1)
                .collect();
            if base + costs.iter().sum::<usize>() < MAX_LINE {
                let per = groups.len().div_ceil(options.jobs.max(1)).min(most);
                return groups.chunks(per).map(joined).collect();
            }
            // Fill each line as far as it goes (at least one group a line).
            let mut out = Vec::new();
            let (mut start, mut length) = (0, base);
            for (end, cost) in costs.iter().enumerate() {
                if end > start && (length + cost >= MAX_LINE || end - start == most) {
                    out.push(joined(&groups[start..end]));
                    (start, length) = (end, base);
                }
                length += cost;
            }
            out.push(joined(&groups[start..]));
            out
        }
    }
}

/// The task's tag (`--tag`) and name: its arguments as read, joined by a space.
pub fn tag(values: &[String]) -> String {
    values.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    fn commands(line: &str, options: &Options) -> Vec<String> {
        let split = split_words(&words(line));
        let composer = Composer::new(&split.command, options).expect("template");
        let sources = read_inputs(&split.inputs, options, || {
            Box::new(std::io::Cursor::new(Vec::new()))
        })
        .expect("inputs");
        batches(&composer, combine(sources, options.link), options)
            .iter()
            .enumerate()
            .map(|(i, values)| composer.compose(values, i as u64 + 1))
            .collect()
    }

    fn one_job() -> Options {
        Options {
            jobs: 1,
            ..Options::default()
        }
    }

    #[test]
    fn arguments_are_quoted_as_parallel_quotes_them() {
        for (arg, quoted) in [
            ("plain-1.x/y+z_", "plain-1.x/y+z_"),
            ("", "''"),
            ("a b", "'a b'"),
            ("c'd", "'c'\"'\"'d'"),
            ("'x", "\"'\"'x'"),
            ("x'", "'x'\"'\""),
            ("e$f", "'e$f'"),
            ("a\nb", "'a\nb'"),
            ("x=y", "'x=y'"),
            ("ä", "'ä'"),
        ] {
            assert_eq!(quote(arg), quoted, "{arg:?}");
        }
    }

    #[test]
    fn replacement_strings_edit_paths_as_parallel_does() {
        let got = commands(
            "echo {} {.} {/} {//} {/.} {#} ::: dir/sub/file.tar.gz noext/ /abs.x .hidden",
            &one_job(),
        );
        assert_eq!(
            got,
            [
                "echo dir/sub/file.tar.gz dir/sub/file.tar file.tar.gz dir/sub file.tar 1",
                "echo noext/ noext/ '' . '' 2",
                "echo /abs.x /abs abs.x / abs 3",
                "echo .hidden '' .hidden . '' 4",
            ]
        );
    }

    #[test]
    fn sources_combine_link_and_append() {
        assert_eq!(
            commands("echo ::: A B ::: C D", &one_job()),
            ["echo A C", "echo A D", "echo B C", "echo B D"]
        );
        assert_eq!(
            commands("echo ::: A B C :::+ 1 2", &one_job()),
            ["echo A 1", "echo B 2"]
        );
        assert_eq!(
            commands("echo {2} {1} {-1} {5} ::: A B :::+ 1 2 ::: x", &one_job()),
            ["echo 1 A x ", "echo 2 B x "]
        );
        let link = Options {
            link: true,
            ..one_job()
        };
        assert_eq!(
            commands("echo ::: A B C ::: 1 2", &link),
            ["echo A 1", "echo B 2", "echo C 1"]
        );
        assert!(commands("echo :::", &one_job()).is_empty());
    }

    #[test]
    fn arguments_per_command_and_context() {
        let n2 = Options {
            spread: Spread::AtMost(2),
            ..one_job()
        };
        assert_eq!(
            commands("echo {1}-{2} ::: a b c", &n2),
            ["echo a-b", "echo c-"]
        );
        assert_eq!(commands("echo ::: a b c", &n2), ["echo a b", "echo c"]);
        let x = |jobs| Options {
            spread: Spread::Context(None),
            jobs,
            ..Options::default()
        };
        assert_eq!(
            commands("echo pre-{}-post {#} ::: a b c d e", &x(2)),
            [
                "echo pre-a-post pre-b-post pre-c-post 1",
                "echo pre-d-post pre-e-post 2"
            ]
        );
        assert_eq!(commands("echo ::: a b c", &x(1)), ["echo a b c"]);
    }

    #[test]
    fn no_command_runs_each_argument_and_q_quotes_the_command() {
        let whole = Composer::new(&[], &one_job()).expect("template");
        assert_eq!(
            whole.compose(&["echo a".into(), "x y".into()], 1),
            "echo a x y"
        );
        let q = Options {
            quote_command: true,
            ..one_job()
        };
        let composer =
            Composer::new(&["echo".into(), "a  b".into(), "{}".into()], &q).expect("template");
        assert_eq!(composer.compose(&["x y".into()], 1), "echo 'a  b' 'x y'");
        let custom = Options {
            replace: Some("@@".into()),
            ..one_job()
        };
        assert_eq!(
            commands("echo @@ {} {.} ::: a.b", &custom),
            ["echo a.b {} a"]
        );
        assert!(Composer::new(&["echo".into(), "{=uc=}".into()], &one_job()).is_err());
    }

    #[test]
    fn colsep_splits_and_trims_columns() {
        let options = Options {
            colsep: Some(regex::Regex::new(",").expect("regex")),
            ..one_job()
        };
        assert_eq!(commands("echo {3} {1} ::: a,b,c", &options), ["echo c a"]);
        assert_eq!(
            columns(" x , y,".into(), options.colsep.as_ref()),
            ["x", "y", ""]
        );
    }

    #[test]
    fn many_arguments_fill_lines_that_fit_and_lose_none() {
        let options = Options {
            spread: Spread::Context(None),
            jobs: 2,
            ..Options::default()
        };
        let composer = Composer::new(&["echo".into(), "pre{}".into()], &options).expect("template");
        let groups: Vec<Vec<String>> = (0..200_000).map(|i| vec![i.to_string()]).collect();
        let lines: Vec<String> = batches(&composer, groups, &options)
            .iter()
            .map(|values| composer.compose(values, 1))
            .collect();
        assert!(lines.len() > 10, "{} lines", lines.len());
        assert!(lines.iter().all(|l| l.len() < MAX_LINE));
        let words: usize = lines.iter().map(|l| l.split(' ').count() - 1).sum();
        assert_eq!(words, 200_000);
    }

    #[test]
    fn dirname_is_posix() {
        for (path, dir) in [
            ("", "."),
            ("/", "/"),
            ("a", "."),
            ("a/", "."),
            ("/a", "/"),
            ("a/b//", "a"),
            ("//a//b", "//a"),
        ] {
            assert_eq!(dirname(path), dir, "{path:?}");
        }
    }
}
