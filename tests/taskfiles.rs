//! Task files as users write them: presets load, mistakes are named precisely.

use std::path::Path;

use poolscope::executor::{Invocation, StdinMode};
use poolscope::model::formats::taskfile::{load, parse};

fn error_of(text: &str) -> String {
    parse(text, Path::new("jobs.toml"))
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn every_preset_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/presets");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("presets folder") {
        let path = entry.expect("entry").path();
        let file = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!file.tasks.is_empty(), "{} has tasks", path.display());
        count += 1;
    }
    assert!(count >= 5, "the seed's five scenarios are presets");
    let pool = load(&dir.join("pool4.toml")).expect("pool4");
    assert_eq!(pool.pool_size, Some(4));
    assert_eq!(pool.tasks.len(), 5);
    assert_eq!(pool.tasks.get(4).expect("task").name, "long_time_task(4)");
    let comm = load(&dir.join("communicate.toml")).expect("communicate");
    assert_eq!(
        comm.tasks.get(0).expect("task").stdin,
        StdinMode::Preset(b"set q=mx\npython.org\nexit\n".to_vec())
    );
    assert!(
        matches!(&comm.tasks.get(0).expect("task").invocation, Invocation::Program { program, .. } if program == "nslookup")
    );
}

#[test]
fn bad_toml_names_file_and_line() {
    let msg = error_of("[pool]\nsize = 4\n\n[[task]\ncommand = \"x\"\n");
    assert!(msg.starts_with("jobs.toml:4:"), "{msg}");
}

#[test]
fn unknown_field_names_the_field_and_line() {
    let msg = error_of("[[task]]\ncommand = \"echo\"\ncomand = \"typo\"\n");
    assert!(msg.starts_with("jobs.toml:3: field `comand`:"), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn empty_command_is_rejected_with_its_line() {
    let msg = error_of(
        "[[task]]\ncommand = \"echo ok\"\n\n[[task]]\nname = \"blank\"\ncommand = \"  \"\n",
    );
    assert_eq!(
        msg,
        "jobs.toml:6: field `task[1].command`: the command is empty"
    );
}

#[test]
fn pool_size_zero_is_rejected() {
    let msg = error_of("[pool]\nsize = 0\n[[task]]\ncommand = \"true\"\n");
    assert_eq!(
        msg,
        "jobs.toml:2: field `pool.size`: pool size must be between 1 and 100000; got 0"
    );
}

#[test]
fn numbers_past_their_bounds_name_the_field_and_the_value() {
    let msg = error_of("[pool]\nsize = 100000000\n[[task]]\ncommand = \"true\"\n");
    assert_eq!(
        msg,
        "jobs.toml:2: field `pool.size`: pool size must be between 1 and 100000; got 100000000"
    );
    let msg = error_of("[[task]]\ncommand = \"true\"\ntimeout = 1e19\n");
    assert_eq!(
        msg,
        "jobs.toml:3: field `task[0].timeout`: 10000000000000000000 seconds is more than a year (at most 31622400 seconds)"
    );
    let msg = error_of("[pool]\nkill_grace = inf\n[[task]]\ncommand = \"true\"\n");
    assert_eq!(
        msg,
        "jobs.toml:2: field `pool.kill_grace`: expected a number of seconds, 0 or more; got inf"
    );
    let msg = error_of("[[task]]\ncommand = \"true\"\nbackground = \"later\"\n");
    assert_eq!(
        msg,
        "jobs.toml:3: field `task[0].background`: expected \"wait\" or \"kill\", got \"later\""
    );
}

#[test]
fn other_mistakes_are_explained() {
    assert!(error_of("[[task]]\nname = \"x\"\n").contains("no `command`"));
    assert!(error_of("[[task]]\ncommand = \"x\"\ntimeout = -1\n").contains("task[0].timeout"));
    assert!(
        error_of("[[task]]\ncommand = \"x\"\nstdin = \"tty\"\n").contains("\"null\" or \"pipe\"")
    );
    assert!(error_of("[[task]]\ncommand = \"x\"\nrange = [3, 3]\n").contains("range is empty"));
    assert!(
        error_of("[pool]\nhalt = \"sometimes\"\n[[task]]\ncommand = \"x\"\n").contains("pool.halt")
    );
    assert!(error_of("").contains("no tasks"));
}

#[test]
fn a_missing_file_names_the_file() {
    let err = load(Path::new("/nonexistent/jobs.toml")).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/jobs.toml: cannot read the file"),
        "{err}"
    );
}
