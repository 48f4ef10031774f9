//! GNU parallel's command line, compared byte for byte: each invocation (taken from
//! parallel's manual, tutorial and examples) runs under GNU parallel and under
//! `poolscope run`, both with `-k`, in a folder with the same files and the same stdin;
//! stdout and the exit status must be the same.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// One invocation: the words after `parallel -k` / `poolscope run -k`, and stdin.
struct Case {
    args: &'static [&'static str],
    stdin: &'static str,
}

const fn case(args: &'static [&'static str]) -> Case {
    Case { args, stdin: "" }
}

const fn piped(args: &'static [&'static str], stdin: &'static str) -> Case {
    Case { args, stdin }
}

const CASES: &[Case] = &[
    // Input sources: one, several (every combination), linked.
    case(&["echo", ":::", "A", "B", "C"]),
    case(&["echo", "{}", ":::", "A", "B", "C"]),
    case(&["echo", ":::", "A", "B", ":::", "C", "D"]),
    case(&["echo", "{1}", "{2}", ":::", "A", "B", ":::", "C", "D"]),
    case(&["echo", "{2}", "{1}", ":::", "A", "B", ":::", "C", "D"]),
    case(&["echo", ":::", "A", "B", "C", ":::+", "1", "2", "3"]),
    case(&["echo", ":::", "A", "B", "C", ":::+", "1", "2"]),
    case(&["echo", ":::", "A", "B", ":::+", "1", "2", ":::", "x", "y"]),
    case(&["--link", "echo", ":::", "A", "B", "C", ":::", "1", "2"]),
    case(&["echo", "{-1}", "{1}", ":::", "a", "b", ":::", "c", "d"]),
    case(&["echo", ":::"]),
    case(&["echo", ":::", "a", ":::", ""]),
    // Files of arguments: ::::, ::::+, -a, and stdin among them.
    case(&["echo", "::::", "abc.txt"]),
    case(&["echo", "::::", "abc.txt", ":::", "x", "y"]),
    case(&["echo", "::::", "abc.txt", "::::+", "123.txt"]),
    case(&["-a", "abc.txt", "-a", "123.txt", "echo"]),
    case(&["-a", "abc.txt", "echo", "{}-{#}"]),
    piped(&["echo", ":::", "a", "b", "::::", "-"], "1\n2\n"),
    piped(&["echo", "{}.done"], "a\nb\n"),
    piped(&["echo", "{#}-{}"], "x\ny\nz\n"),
    // Replacement strings.
    case(&["echo", "{.}", ":::", "dir/file.tar.gz", "plain", ".hidden"]),
    case(&["echo", "{/}", ":::", "dir/sub/file.txt", "file", "dir/"]),
    case(&[
        "echo",
        "{//}",
        ":::",
        "dir/sub/file.txt",
        "file",
        "/abs",
        "dir/",
    ]),
    case(&["echo", "{/.}", ":::", "dir/sub/file.txt", "a.b.c"]),
    case(&[
        "echo", "{2.}", "{1/}", "{1//}", ":::", "dir/a.b", ":::", "x.y",
    ]),
    case(&["echo", "{#}", "{}", ":::", "a", "b", "c"]),
    case(&["-j1", "echo", "{%}", ":::", "a", "b"]),
    case(&["echo", "{5}", "x", ":::", "a"]),
    case(&["-I", ",,", "echo", ",,", "{}", "{.}", ":::", "a.b"]),
    case(&["echo", "x{}y", ":::", ""]),
    // Arguments per command.
    case(&["-n", "2", "echo", ":::", "a", "b", "c", "d", "e"]),
    case(&[
        "-n3", "-j1", "echo", ":::", "1", "2", "3", "4", "5", "6", "7",
    ]),
    // (`x` first: parallel's shell is bash, poolscope's sh, whose `echo -e` differ.)
    case(&[
        "-N", "2", "echo", "x{2}-{1}", ":::", "a", "b", "c", "d", "e",
    ]),
    case(&["-N2", "echo", "{}", ":::", "a", "b", "c", "d"]),
    case(&[
        "-N2", "echo", "{1}", "{2}", "{3}", "{4}", ":::", "a", "b", ":::", "c", "d",
    ]),
    case(&["-N0", "echo", "x", ":::", "a", "b", "c"]),
    case(&["-j1", "-X", "echo", "pre-{}-post", ":::", "a", "b", "c"]),
    case(&[
        "-j2", "-X", "echo", "{.}", ":::", "a.x", "b.y", "c.z", "d.w", "e",
    ]),
    case(&[
        "-j3", "-X", "echo", "pre-{}", "{#}", ":::", "a", "b", "c", "d", "e", "f", "g",
    ]),
    case(&["-j1", "-m", "echo", ":::", "a", "b", "c"]),
    case(&[
        "-n", "2", "-X", "echo", "pre{}", ":::", "a", "b", "c", "d", "e",
    ]),
    case(&["-j2", "-m", "echo", "[{}]", ":::", "a", "b", "c"]),
    // Columns.
    case(&["--colsep", ",", "echo", "{2}", "{1}", ":::", "a,b", "c,d"]),
    case(&["--colsep", " +", "echo", "{2}", ":::", "a   b"]),
    piped(&["--colsep", "\t", "echo", "{1}:{2}"], "a\tb\nc\td\n"),
    piped(&["--colsep", "\t", "echo"], "a b\tc\n d e \n"),
    case(&["--colsep", ",", "echo", "{3}", ":::", "a,b"]),
    // NUL-separated input, arguments holding newlines.
    piped(&["-0", "echo"], "a\nb\0c d\0"),
    piped(&["-0", "printf", "[%s]\\n"], "a\nb\0"),
    // Quoting: arguments reach the command as they were, whatever they hold.
    case(&["echo", ":::", "a b", "c'd", "e$f", "g\"h", "*", "~x", "x=y"]),
    case(&["echo", "{}", ":::", "  two  spaces  "]),
    case(&[
        "printf",
        "%s\\n",
        ":::",
        "$HOME",
        "`echo x`",
        "$(echo y)",
        "a;b",
        "a|b",
    ]),
    case(&["echo", ":::", "ä ö", "日本"]),
    case(&["echo \"{}\"", ":::", "a b"]),
    case(&["echo {} | tr a-z A-Z", ":::", "hello", "world"]),
    case(&["echo", "a  b", ":::", "x"]),
    case(&["-q", "echo", "a  b", ":::", "x"]),
    case(&["-q", "printf", "%s|%s\\n", "{}", "x", ":::", "a b"]),
    // Whole command lines (no command).
    case(&[":::", "echo a", "echo b | tr b B"]),
    case(&[":::", "echo", "printf x", ":::", "1", "2"]),
    piped(&[], "echo a\necho b; echo c\n"),
    // --tag.
    case(&["--tag", "echo", ":::", "a", "b"]),
    case(&["--tag", "echo", ":::", "a", "b", ":::", "c"]),
    case(&["--tag", ":::", "echo x", "echo y"]),
    // Exit status: the number of failed tasks.
    case(&[":::", "exit 0", "exit 1", "exit 2"]),
    case(&["false", ":::", "1", "2", "3"]),
    case(&["sh", "-c", "'exit {}'", ":::", "0", "3", "0", "4"]),
    case(&["no-such-command-here", ":::", "a"]),
    case(&["echo", "::::", "no-such-file"]),
    // --dry-run prints the commands, quoted as they would run.
    case(&["--dry-run", "echo", ":::", "a b", "c'd", "e"]),
    case(&[
        "--dry-run",
        "-j1",
        "-X",
        "echo",
        "pre-{}",
        ":::",
        "a",
        "b c",
    ]),
    case(&["--dry-run", "cp", "{}", "{.}.bak", ":::", "x y.txt", "z"]),
];

fn fixtures(dir: &Path) {
    std::fs::write(dir.join("abc.txt"), "a\nb\nc\n").expect("write");
    std::fs::write(dir.join("123.txt"), "1\n2\n3\n").expect("write");
}

fn run(mut command: Command, dir: &Path, stdin: &str) -> Output {
    let mut child = command
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait")
}

#[test]
fn gnu_parallel_invocations_print_and_exit_the_same() {
    let parallel = Command::new("parallel")
        .arg("--version")
        .output()
        .expect("GNU parallel is on PATH (scripts/test.sh installs it: apt-get install parallel)");
    assert!(parallel.status.success(), "parallel --version");
    assert!(CASES.len() >= 40, "at least 40 invocations");
    let dir = tempfile::tempdir().expect("tempdir");
    fixtures(dir.path());
    let mut differ = Vec::new();
    for case in CASES {
        let mut gnu = Command::new("parallel");
        gnu.args(["--will-cite", "-k"]).args(case.args);
        let mut ours = common::poolscope();
        ours.args(["run", "-k"]).args(case.args);
        let (gnu, ours) = (
            run(gnu, dir.path(), case.stdin),
            run(ours, dir.path(), case.stdin),
        );
        if gnu.stdout != ours.stdout || gnu.status.code() != ours.status.code() {
            differ.push(format!(
                "{:?} (stdin {:?}):\n  parallel  {:?} {:?}\n  poolscope {:?} {:?} {}",
                case.args,
                case.stdin,
                gnu.status.code(),
                String::from_utf8_lossy(&gnu.stdout),
                ours.status.code(),
                String::from_utf8_lossy(&ours.stdout),
                String::from_utf8_lossy(&ours.stderr),
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} invocations differ:\n{}",
        differ.len(),
        CASES.len(),
        differ.join("\n")
    );
}
