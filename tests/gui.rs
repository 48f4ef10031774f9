//! The workbench window driven as a user would, through its accessibility tree.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use poolscope::app::{Action, AppOptions, ExportKind, FilePurpose, PoolscopeApp, Row};
use poolscope::model::TaskDraft;

const WAIT: Duration = Duration::from_secs(30);

/// Where these tests' runs go (not the tester's own data directory).
static RUNS: std::sync::LazyLock<tempfile::TempDir> =
    std::sync::LazyLock::new(|| tempfile::tempdir().expect("tempdir"));

fn app_with(commands: &[&str]) -> PoolscopeApp {
    app_with_options(commands, test_options())
}

/// Runs kept in this test process's folder; built-in jobs and workers run by the real
/// binary.
fn test_options() -> AppOptions {
    AppOptions {
        run_dir: Some(RUNS.path().join("runs")),
        helper: Some(env!("CARGO_BIN_EXE_poolscope").into()),
        ..AppOptions::default()
    }
}

/// A window that opens `file` (a task file, a FIFO...).
fn app_opening(file: std::path::PathBuf) -> PoolscopeApp {
    PoolscopeApp::new(AppOptions {
        file: Some(file),
        ..test_options()
    })
}

/// A FIFO at `dir/tasks.fifo`.
fn make_fifo(dir: &std::path::Path) -> std::path::PathBuf {
    let fifo = dir.join("tasks.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    fifo
}

fn app_with_options(commands: &[&str], options: AppOptions) -> PoolscopeApp {
    let mut app = PoolscopeApp::new(options);
    app.rows = commands
        .iter()
        .map(|c| Row {
            draft: TaskDraft::shell(*c),
            task: None,
        })
        .collect();
    app.pool_size = 2;
    app
}

fn harness(app: PoolscopeApp) -> Harness<'static, PoolscopeApp> {
    // Glyphs come from system fonts in the real app; these tests check text, not pixels
    // (the CI screenshot checks pixels), so a missing font must not fail them.
    Harness::builder()
        .with_size([1280.0, 800.0])
        .allow_missing_glyphs()
        .build_ui_state(
            |ui, app: &mut PoolscopeApp| {
                app.logic(ui.ctx());
                for action in app.draw(ui) {
                    app.apply(action, ui.ctx());
                }
            },
            app,
        )
}

/// Step the UI, waiting (bounded) on executor events between frames, until `done`.
fn run_until(
    h: &mut Harness<'static, PoolscopeApp>,
    what: &str,
    done: impl Fn(&Harness<'static, PoolscopeApp>) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        h.run_steps(2);
        if done(h) {
            // One more frame, so what the last actions changed (a notice cleared, rows
            // added) is laid out before the test clicks by position.
            h.run_steps(1);
            return;
        }
        if Instant::now() >= deadline {
            let labels: Vec<String> = h
                .query_all_by(|_| true)
                .map(|n| {
                    let a = n.accesskit_node();
                    format!("{:?}|{:?}|{:?}", a.role(), a.label(), a.value())
                })
                .collect();
            panic!("timed out waiting for {what}; the window shows: {labels:?}");
        }
        h.state_mut().wait_for_event(Duration::from_millis(200));
    }
}

/// Click into the last row's command field and type, as a user would.
fn type_into_last_command(h: &mut Harness<'static, PoolscopeApp>, text: &str) {
    // The last row's text fields, left to right: name, command, timeout.
    let field = |h: &Harness<'static, PoolscopeApp>| {
        let fields: Vec<egui::Rect> = h
            .get_all_by_role(egui::accesskit::Role::TextInput)
            .map(|n| n.rect())
            .collect();
        // The list's last row: the lowest fields above the console's.
        let console_top = h.get_by_label("all tasks").rect().top();
        let bottom = fields
            .iter()
            .map(|r| r.center().y)
            .filter(|&y| y < console_top)
            .fold(f32::MIN, f32::max);
        let mut row: Vec<egui::Rect> = fields
            .into_iter()
            .filter(|r| (r.center().y - bottom).abs() < 6.0)
            .collect();
        row.sort_by(|a, b| a.left().total_cmp(&b.left()));
        row[1]
    };
    // Found again after each frame: the layout may move by a point or two.
    let rect = field(h);
    let nearest = |h: &Harness<'static, PoolscopeApp>| {
        h.get_all_by_role(egui::accesskit::Role::TextInput)
            .min_by(|a, b| {
                let d = |n: &egui_kittest::Node<'_>| n.rect().center().distance(rect.center());
                d(a).total_cmp(&d(b))
            })
            .expect("the command field")
            .rect()
    };
    let target = nearest(h);
    h.get_all_by_role(egui::accesskit::Role::TextInput)
        .find(|n| n.rect() == target)
        .expect("the command field")
        .focus();
    h.run_steps(1);
    let target = nearest(h);
    h.get_all_by_role(egui::accesskit::Role::TextInput)
        .find(|n| n.rect() == target)
        .expect("the command field")
        .type_text(text);
}

/// Of the widgets labelled `label`, the highest in the window (the task list's, not the
/// console's).
fn topmost<'h>(h: &'h Harness<'static, PoolscopeApp>, label: &'h str) -> egui_kittest::Node<'h> {
    h.get_all_by_label(label)
        .min_by(|a, b| a.rect().top().total_cmp(&b.rect().top()))
        .unwrap_or_else(|| panic!("no {label}"))
}

/// Focus the field labelled `label` and type `text` into it.
fn type_into(h: &mut Harness<'static, PoolscopeApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.run_steps(1);
    h.get_by_label(label).type_text(text);
}

/// The window's close button.
fn request_close(h: &mut Harness<'static, PoolscopeApp>) {
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
}

fn shows(h: &Harness<'static, PoolscopeApp>, text: &str) -> usize {
    h.query_all_by_label(text).count()
}

#[test]
fn set_pool_size_add_a_task_start_and_see_outcomes() {
    let mut h = harness(app_with(&["echo first", "exit 3"]));
    h.run_steps(2);
    h.get_by_label("Pool size").set_value_accesskit(3.0);
    h.run_steps(2);
    assert_eq!(h.state().pool_size, 3);

    h.get_by_label("+ Add task").click();
    h.run_steps(2);
    type_into_last_command(&mut h, "echo added by hand");
    h.run_steps(2);
    assert_eq!(h.state().rows[2].draft.command, "echo added by hand");

    h.get_by_label("Start").click();
    run_until(&mut h, "three tasks to finish", |h| {
        h.query_by_label_contains("Done 2").is_some()
            && h.query_by_label_contains("Failed 1").is_some()
    });
    assert!(
        shows(&h, "exit 3") >= 1,
        "the failure is shown with its exit code"
    );
    assert_eq!(shows(&h, "failed"), 1, "one row in the failed state");
    assert!(shows(&h, "done") >= 2);
}

#[test]
fn an_invalid_task_blocks_start_with_a_visible_reason() {
    let mut h = harness(app_with(&["echo ok", "   "]));
    h.run_steps(2);
    assert!(
        h.query_by_label("invalid: the command is empty").is_some(),
        "marked inline"
    );
    h.get_by_label("Start").click();
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("Cannot start: task 2 cannot run: the command is empty")
            .is_some(),
        "Start explains what blocks it"
    );
    assert!(h.state().run.is_none(), "nothing started");
}

#[test]
fn an_unusable_run_folder_is_reported_before_any_task_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, "").expect("write");
    let options = AppOptions {
        run_dir: Some(not_a_folder),
        ..AppOptions::default()
    };
    let mut h = harness(app_with_options(&["echo ok"], options));
    h.get_by_label("Start").click();
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("Cannot start: run folder")
            .is_some()
            && h.query_by_label_contains("is not a folder").is_some(),
        "Start names the folder and what is wrong with it"
    );
    assert!(h.state().run.is_none(), "nothing started");
}

#[test]
fn a_malformed_file_shows_the_error_and_keeps_the_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[task]]\ncommand = \"echo\"\ncomand = \"typo\"\n").expect("write");
    let mut h = harness(app_with(&["echo keep me"]));
    h.run_steps(2);
    h.state_mut().open(&bad);
    h.run_steps(2);
    let expected = format!("{}:3: field `comand`", bad.display());
    assert!(
        h.query_by_label_contains(&expected).is_some(),
        "the error names file, line and field"
    );
    assert_eq!(h.state().rows.len(), 1);
    assert_eq!(h.state().rows[0].draft.command, "echo keep me");
}

#[test]
fn a_task_added_while_running_runs_and_close_refuses_more() {
    // The first task runs until the test lets it end: it is still running when the
    // second is added, however loaded the machine.
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = dir.path().join("stop");
    let first = format!("while [ ! -e '{}' ]; do sleep 0.05; done", stop.display());
    let mut h = harness(app_with(&[first.as_str()]));
    h.run_steps(2);
    h.get_by_label("Start").click();
    run_until(&mut h, "the first task to run", |h| {
        shows(h, "running") >= 1
    });

    h.get_by_label("+ Add task").click();
    h.run_steps(2);
    type_into_last_command(&mut h, "echo late arrival");
    h.run_steps(2);
    h.get_by_label("Run").click();
    std::fs::write(&stop, "").expect("stop file");
    run_until(&mut h, "both tasks to finish", |h| {
        h.query_by_label_contains("Done 2").is_some()
    });

    h.get_by_label("Close").click();
    run_until(&mut h, "the pool to finish", |h| {
        h.query_by_label_contains("Pool: finished").is_some()
    });
    // A closed, finished pool takes nothing more; Start begins a new run instead.
    h.state_mut().rows.push(Row {
        draft: TaskDraft::shell("echo too late"),
        task: None,
    });
    let ctx = h.ctx.clone();
    h.state_mut()
        .apply(poolscope::app::Action::SubmitPending, &ctx);
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("No pool is running: press Start")
            .is_some()
    );
}

#[test]
fn close_while_running_refuses_adds_with_a_message() {
    // Long enough to still run however slow the machine is: the pool is closed, not
    // finished, when the new row is submitted.
    let mut h = harness(app_with(&["sleep 60"]));
    h.run_steps(2);
    h.get_by_label("Start").click();
    run_until(&mut h, "start", |h| shows(h, "running") >= 1);
    h.get_by_label("Close").click();
    h.run_steps(2);
    h.state_mut().rows.push(Row {
        draft: TaskDraft::shell("echo refused"),
        task: None,
    });
    h.run_steps(2);
    h.get_by_label("Submit 1 new").click();
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("the pool is closed: it accepts no more tasks")
            .is_some(),
        "visible refusal"
    );
    h.get_by_label("Terminate").click();
    run_until(&mut h, "drain", |h| {
        h.query_by_label_contains("Pool: finished").is_some()
    });
}

#[test]
fn selecting_a_task_shows_its_output_including_non_latin_text() {
    let mut h = harness(app_with(&["echo 子进程要执行的代码; echo oops >&2"]));
    h.run_steps(2);
    h.get_by_label("Start").click();
    run_until(&mut h, "finish", |h| {
        h.query_by_label_contains("Done 1").is_some()
    });
    assert!(h.query_by_label_contains("Console of task 1").is_some());
    let output = h
        .query_by(|n| {
            n.value()
                .is_some_and(|l| l.contains("子进程要执行的代码\n") && l.contains("oops"))
        })
        .is_some();
    let labels: Vec<String> = h
        .query_all_by(|_| true)
        .map(|n| {
            let a = n.accesskit_node();
            format!("{:?}|{:?}|{:?}", a.role(), a.label(), a.value())
        })
        .collect();
    assert!(
        output,
        "stdout (non-Latin) and stderr shown together in the output panel: {labels:?}"
    );
}

#[test]
fn hovering_a_timeline_bar_explains_it_and_clicking_selects_the_task() {
    let mut h = harness(app_with(&["echo one", "sleep 0.2; echo two"]));
    h.run_steps(2);
    h.get_by_label("Start").click();
    run_until(&mut h, "both tasks", |h| {
        h.query_by_label_contains("Done 2").is_some()
    });
    // Close the pool and let it finish: the run's clock stops, so nothing on the
    // timeline moves between measuring a bar and pointing at it, however loaded the
    // machine is.
    h.get_by_label("Close").click();
    run_until(&mut h, "the pool to finish", |h| {
        h.query_by_label_contains("Pool: finished").is_some()
    });
    h.run_steps(2);
    let task = poolscope::executor::TaskId(2);
    let center = {
        let app = h.state();
        let run = app.run.as_ref().expect("a run");
        app.timeline
            .bar_center(&run.record, run.now(), task)
            .expect("task 2 has a bar")
    };
    h.hover_at(center);
    // Tooltips appear once the pointer has rested (egui's tooltip delay).
    h.run_steps(12);
    assert!(
        h.query_by_label_contains("Task 2: sleep 0.2; echo two")
            .is_some(),
        "tooltip names the task"
    );
    let exact = |h: &Harness<'static, PoolscopeApp>, text: &str| {
        h.query_all_by(|n| n.value().is_some_and(|v| v == text))
            .count()
    };
    assert_eq!(exact(&h, "queue wait"), 1, "tooltip gives the queue wait");
    assert_eq!(exact(&h, "runtime"), 1, "tooltip gives the runtime");

    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos: center,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::NONE,
        });
        h.run_steps(1);
    }
    h.run_steps(2);
    assert_eq!(h.state().selected, Some(task));
    assert!(
        h.query_by_label_contains("Console of task 2").is_some(),
        "the output panel follows the click"
    );
    assert!(
        h.query_all_by(|n| n.value().is_some_and(|v| v == "two\n"))
            .count()
            > 0,
        "and shows that task's output"
    );
}

#[test]
fn typing_into_the_input_box_reaches_the_task_and_its_reply_shows() {
    let mut app = app_with(&["cat"]);
    app.rows[0].draft.stdin = poolscope::model::DraftStdin::Pipe;
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Start").click();
    run_until(&mut h, "cat to run", |h| {
        h.query_by_label_contains("Running 1").is_some()
    });
    type_into(&mut h, "Input", "hello there");
    h.run_steps(1);
    h.key_press(egui::Key::Enter);
    let console_has = |h: &Harness<'static, PoolscopeApp>, line: &str| {
        h.query_all_by(|n| {
            n.role() == egui::accesskit::Role::Label
                && n.value()
                    .is_some_and(|v| v.lines().filter(|l| *l == line).count() >= 2)
        })
        .count()
            > 0
    };
    run_until(&mut h, "the echo of the input and cat's reply", |h| {
        console_has(h, "hello there")
    });
    assert_eq!(
        h.state().console.history,
        vec!["hello there".to_owned()],
        "Up/Down history remembers it"
    );

    h.get_by_label("EOF").click();
    run_until(&mut h, "cat to end at EOF", |h| {
        h.query_by_label_contains("Done 1").is_some()
    });
    assert!(
        h.query_by_label_contains("the task is not running")
            .is_some(),
        "the input box says why it is off"
    );
    let ctx = h.ctx.clone();
    h.state_mut().apply(
        poolscope::app::Action::SendLine(poolscope::executor::TaskId(1), "late".into()),
        &ctx,
    );
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("Could not send: task 1 is not running")
            .is_some(),
        "sending to an exited task is a visible error"
    );
}

#[test]
fn lines_typed_faster_than_frames_each_reach_the_task_and_the_box_keeps_the_focus() {
    let mut app = app_with(&["while read l; do echo \"got $l\"; done"]);
    app.rows[0].draft.stdin = poolscope::model::DraftStdin::Pipe;
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_label("Start").click();
    run_until(&mut h, "the reader to run", |h| {
        h.query_by_label_contains("Running 1").is_some()
    });
    h.get_by_label("Input").click();
    h.run_steps(1);
    // Three lines and their Enters arrive within one frame, as from a fast typist or
    // xdotool: egui's box stops reading at the first Enter.
    let key = |key, pressed| egui::Event::Key {
        key,
        physical_key: None,
        pressed,
        repeat: false,
        modifiers: egui::Modifiers::NONE,
    };
    for word in ["one", "two", "three"] {
        h.input_mut().events.push(egui::Event::Text(word.into()));
        h.input_mut().events.push(key(egui::Key::Enter, true));
        h.input_mut().events.push(key(egui::Key::Enter, false));
    }
    h.input_mut().events.push(egui::Event::Text("four".into()));
    run_until(&mut h, "three replies", |h| {
        h.state()
            .run
            .as_ref()
            .map(|r| {
                r.record
                    .task_at(0)
                    .expect("task")
                    .output
                    .tail_lines(4096, 10)
                    .lines
                    .len()
            })
            .is_some_and(|n| n >= 6)
    });
    let task = h
        .state()
        .run
        .as_ref()
        .expect("run")
        .record
        .task_at(0)
        .expect("task");
    let lines = task.output.tail_lines(4096, 10);
    let text: Vec<String> = (0..lines.lines.len())
        .map(|i| lines.line(i).0.into_owned())
        .collect();
    for word in ["one", "two", "three"] {
        assert!(
            text.contains(&format!("got {word}")),
            "the task read '{word}': {text:?}"
        );
    }
    assert_eq!(
        h.state().console.input,
        "four",
        "what follows waits in the box"
    );
    assert!(
        h.ctx.memory(egui::Memory::focused) == Some(poolscope::ui::console::input_id()),
        "the box keeps the keyboard focus after sending"
    );
}

#[test]
fn a_typed_path_saves_and_opens_and_a_bad_file_is_reported_in_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("saved.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[pool]\nsize = 0\n[[task]]\ncommand = \"true\"\n").expect("write");
    let mut h = harness(app_with(&["echo saved by the window"]));
    h.run_steps(2);
    // The typed-path window, as a user meets it: a normal click in its field keeps it
    // open (a menu closed on that click), and Enter acts.
    let use_path =
        |h: &mut Harness<'static, PoolscopeApp>, path: &std::path::Path, purpose: FilePurpose| {
            if purpose == FilePurpose::Open {
                h.get_by_label("File").click();
                h.run_steps(2);
                h.get_by_label("Open a typed path…").click();
            } else {
                let ctx = h.ctx.clone();
                h.state_mut().apply(Action::TypePath(purpose), &ctx);
            }
            h.run_steps(2);
            h.get_by_label("Path").click();
            h.run_steps(2);
            assert!(
                h.query_by_label("Path").is_some(),
                "a click in the field keeps the window open"
            );
            h.state_mut().path_input.clear();
            h.get_by_label("Path")
                .type_text(path.to_str().expect("utf8"));
            h.run_steps(1);
            h.key_press(egui::Key::Enter);
            h.run_steps(2);
            assert!(
                h.query_by_label("Path").is_none(),
                "Enter closes the window"
            );
        };
    use_path(&mut h, &good, FilePurpose::SaveTasks);
    let text = std::fs::read_to_string(&good).expect("saved");
    assert!(text.contains("echo saved by the window"), "{text}");

    use_path(&mut h, &bad, FilePurpose::Open);
    let expected = format!("{}:2: field `pool.size`", bad.display());
    assert!(
        h.query_by_label_contains(&expected).is_some(),
        "the error is shown in the window"
    );
    assert_eq!(
        h.state().rows[0].draft.command,
        "echo saved by the window",
        "the list is kept"
    );

    h.state_mut().rows.clear();
    use_path(&mut h, &good, FilePurpose::Open);
    assert_eq!(h.state().rows.len(), 1, "the saved list opens again");
    assert_eq!(h.state().rows[0].draft.command, "echo saved by the window");
}

#[test]
fn a_python_row_can_be_watched_and_its_pool_fills_the_window() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/map_chunks.py");
    let mut h = harness(app_with(&[&format!("python3 {script}"), "echo not python"]));
    h.run_steps(2);
    // Only the Python row offers it.
    assert_eq!(h.query_all_by_label("Watch").count(), 1);
    h.get_by_label("Watch").click();
    // The map's 40 tasks, and the program itself (task 0, "main").
    run_until(&mut h, "the watched map's 40 tasks and the program", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.succeeded() == 41)
    });
    let record = &h.state().run.as_ref().expect("run").record;
    let main = record
        .task(poolscope::executor::TaskId(0))
        .expect("the program is task 0");
    assert_eq!(main.spec.name, format!("main: python3 {script}"));
    let printed = main.output.tail_lines(4096, 10);
    assert!(
        (0..printed.lines.len()).any(|i| printed.line(i).0 == "20540"),
        "what the program printed is in its console, not lost to a terminal"
    );
    assert_eq!(record.task_at(1).expect("task").spec.name, "f(0)");
    let listed = h.state_mut().past_runs().to_vec();
    assert!(
        listed
            .iter()
            .any(|r| r.about.watched
                && r.about.source.as_deref() == Some(&format!("python3 {script}"))),
        "the watched run is in Past runs, named by its command"
    );
}

#[test]
fn a_run_cut_short_is_offered_at_the_next_start_and_resumes_to_completion() {
    use std::io::Write;
    let runs = tempfile::tempdir().expect("tempdir");
    let root = runs.path().join("runs");
    // Tasks 3 and 4 hang until this flag exists: the first run is cut short in them.
    let flag = runs.path().join("flag");
    let hang = format!("test -e {} || sleep 30", flag.display());
    let input = format!("true\ntrue\n{hang}\n{hang}\necho 5\necho 6\n");
    // A run cut short: `poolscope run` SIGKILLed once two of its six tasks finished.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poolscope"))
        .env("POOLSCOPE_RUN_DIR", &root)
        .args(["run", "-j", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let journal = || {
        std::fs::read_dir(&root)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.path().join("journal.jsonl"))
    };
    let deadline = Instant::now() + WAIT;
    // Polled: the run is another process.
    while journal()
        .and_then(|j| std::fs::read_to_string(j).ok())
        // A start is a short line (`["s",…]`) or, written whole, a `"Started"` object.
        .map_or(0, |t| {
            t.matches("\"Started\"").count()
                + t.lines().filter(|l| l.starts_with("[\"s\",")).count()
        })
        < 4
    {
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    std::fs::write(&flag, "").expect("flag");

    let options = AppOptions {
        run_dir: Some(root.clone()),
        ..AppOptions::default()
    };
    let mut app = app_with_options(&[], options);
    // The controls say 4 (a preset, another list): the run goes on at its own 2.
    app.pool_size = 4;
    let mut h = harness(app);
    h.run_steps(2);
    assert!(h.query_by_label("A run did not end cleanly").is_some());
    assert!(
        h.query_by_label_contains("6 tasks, 2 succeeded, 0 failed, 2 lost")
            .is_some(),
        "the dialog says what the run holds"
    );
    h.get_by_label("Resume it").click();
    h.run_steps(2);
    let run = h.state().run.as_ref().expect("the run");
    assert_eq!(
        run.record.task_count(),
        6,
        "the run's own tasks, not the list's"
    );
    run_until(&mut h, "the resumed run to end", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.phase == poolscope::model::PoolPhase::Finished)
    });
    let record = &h.state().run.as_ref().expect("run").record;
    assert_eq!(record.succeeded(), 6, "every task succeeded");
    assert_eq!(h.state().pool_size, 2, "resumed at its own pool size");
    let slots: Vec<usize> = record.attempts().filter_map(|(_, a)| a.slot).collect();
    assert!(slots.iter().all(|&s| s < 2), "slots used: {slots:?}");
    drop(h);
    let dir = journal()
        .expect("journal")
        .parent()
        .expect("dir")
        .to_owned();
    let loaded = poolscope::model::store::journal::load(&dir).expect("load");
    assert!(loaded.clean, "the resumed run ended cleanly");
    assert_eq!(loaded.record.succeeded(), 6);
    // The lost tasks ran again as their second attempts; the first two only once.
    assert_eq!(loaded.record.task_at(2).expect("task").attempts.len(), 2);
    assert_eq!(loaded.record.task_at(0).expect("task").attempts.len(), 1);
    // Their output moved next to the run's own, under their own numbers.
    assert_eq!(
        std::fs::read_to_string(dir.join("5.1.stdout")).expect("task 5's output"),
        "5\n"
    );
}

#[test]
fn past_runs_are_listed_and_one_opens_on_the_timeline() {
    use std::io::Write;
    let runs = tempfile::tempdir().expect("tempdir");
    let root = runs.path().join("runs");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poolscope"))
        .env("POOLSCOPE_RUN_DIR", &root)
        .args(["run", "-j", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("poolscope run");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"echo one\nexit 3\necho three\n")
        .expect("write");
    assert_eq!(child.wait().expect("wait").code(), Some(1));

    let options = AppOptions {
        run_dir: Some(root),
        ..AppOptions::default()
    };
    let mut h = harness(app_with_options(&["echo mine"], options));
    h.run_steps(2);
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Past runs").hover();
    h.run_steps(2);
    h.get_by_label_contains("3 tasks: 2 ok, 1 failed").click();
    h.run_steps(2);
    let run = h.state().run.as_ref().expect("the run is open");
    assert_eq!(run.record.task_count(), 3);
    assert_eq!(run.record.failed(), 1);
    assert_eq!(h.state().rows.len(), 3, "its tasks are the rows");
}

#[test]
fn export_writes_to_a_typed_path_without_a_file_dialog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("run.tsv");
    let mut h = harness(app_with(&["echo exported"]));
    h.get_by_label("Start").click();
    run_until(&mut h, "the task to finish", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.succeeded() == 1)
    });
    let ctx = h.ctx.clone();
    h.state_mut().apply(
        Action::TypePath(FilePurpose::Export(ExportKind::Joblog)),
        &ctx,
    );
    h.run_steps(2);
    type_into(&mut h, "Path", joblog.to_str().expect("utf8"));
    h.run_steps(1);
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    let text = std::fs::read_to_string(&joblog).expect("the joblog was written");
    assert!(text.starts_with("Seq\tHost"), "{text}");
    assert!(text.contains("echo exported"), "{text}");
}

/// Press Start and wait until every task of the list ran to its end.
fn start_and_finish(h: &mut Harness<'static, PoolscopeApp>, tasks: usize) {
    h.get_by_label("Start").click();
    run_until(h, "the tasks to finish", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.task_count() == tasks && r.record.unfinished() == 0)
    });
}

#[test]
fn the_timeline_zooms_pans_fits_and_shows_three_lane_modes() {
    use poolscope::ui::timeline::layout::LaneMode;
    let mut h = harness(app_with(&["sleep 0.2", "sleep 0.3", "sleep 0.2"]));
    start_and_finish(&mut h, 3);
    h.run_steps(2);
    assert!(
        h.state().timeline.view.is_none(),
        "a finished run is fitted"
    );
    let bar = {
        let app = h.state();
        let run = app.run.as_ref().expect("run");
        let first = run.record.task_at(1).expect("task").id;
        app.timeline
            .bar_center(&run.record, run.now(), first)
            .expect("task 2's bar is drawn")
    };
    h.hover_at(bar);
    h.run_steps(1);
    h.key_press(egui::Key::Plus);
    h.run_steps(2);
    let zoomed = h.state().timeline.view.expect("+ zooms in");
    let makespan = h
        .state()
        .run
        .as_ref()
        .expect("run")
        .record
        .last_event
        .as_secs_f64();
    assert!(zoomed.span() < makespan, "{zoomed:?} narrower than the run");
    h.key_press(egui::Key::ArrowRight);
    h.run_steps(2);
    let panned = h.state().timeline.view.expect("view");
    assert!(panned.start > zoomed.start, "→ pans later");
    assert!(
        !h.state().timeline.follow_live,
        "looking around stops following the present"
    );
    assert!(
        (panned.span() - zoomed.span()).abs() < 1e-9,
        "panning keeps the zoom"
    );
    // Dragging the lanes pans too.
    h.drag_at(bar);
    h.run_steps(1);
    h.hover_at(bar + egui::vec2(120.0, 0.0));
    h.run_steps(1);
    h.drop_at(bar + egui::vec2(120.0, 0.0));
    h.run_steps(2);
    let dragged = h.state().timeline.view.expect("view");
    assert!(
        dragged.start < panned.start,
        "dragging right shows earlier times"
    );
    h.get_by_label("Fit").click();
    h.run_steps(2);
    assert!(h.state().timeline.view.is_none(), "Fit shows the whole run");
    for (label, mode) in [
        ("by PID", LaneMode::Pid),
        ("by task", LaneMode::Task),
        ("by slot", LaneMode::Slot),
    ] {
        h.get_by_label(label).click();
        h.run_steps(2);
        assert_eq!(h.state().timeline.mode, mode);
        let app = h.state();
        let run = app.run.as_ref().expect("run");
        for task in run.record.tasks() {
            assert!(
                app.timeline
                    .bar_center(&run.record, run.now(), task.id)
                    .is_some(),
                "{label}: task {} has its bar",
                task.id
            );
        }
    }
}

#[test]
fn the_menus_list_exports_and_presets_and_recent_files_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("two.toml");
    let mut h = harness(app_with(&["echo one", "echo two"]));
    // Save to a typed path: it becomes a recent file.
    let ctx = h.ctx.clone();
    h.state_mut()
        .apply(Action::TypePath(FilePurpose::SaveTasks), &ctx);
    h.run_steps(2);
    type_into(&mut h, "Path", saved.to_str().expect("utf8"));
    h.run_steps(1);
    h.get_by_label("Save").click();
    h.run_steps(2);
    assert!(saved.exists(), "saved to the typed path");
    // A preset replaces the list.
    h.get_by_label("Presets").click();
    h.run_steps(2);
    for (label, _, _) in poolscope::model::formats::presets::PRESETS {
        assert_eq!(shows(&h, label), 1, "the Presets menu lists {label}");
    }
    let (label, _, text) = poolscope::model::formats::presets::PRESETS[0];
    h.get_by_label(label).click();
    h.run_steps(2);
    let preset =
        poolscope::model::formats::taskfile::parse(text, std::path::Path::new("preset.toml"))
            .expect("preset parses");
    assert_eq!(h.state().rows.len(), preset.tasks.len());
    // The recent file brings the saved list back.
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Recent files").click();
    h.run_steps(2);
    h.get_by_label(saved.display().to_string().as_str()).click();
    h.run_steps(2);
    let commands: Vec<&str> = h
        .state()
        .rows
        .iter()
        .map(|r| r.draft.command.as_str())
        .collect();
    assert_eq!(commands, ["echo one", "echo two"]);
    // The Export menu offers every kind, enabled once there is a run.
    start_and_finish(&mut h, 2);
    h.get_by_label("Export").click();
    h.run_steps(2);
    for kind in poolscope::app::ExportKind::ALL {
        assert_eq!(shows(&h, kind.label()), 1, "Export lists {}", kind.label());
    }
}

#[test]
fn pause_resume_resize_and_terminate_act_on_the_running_pool() {
    let mut h = harness(app_with(&["sleep 30", "sleep 30", "sleep 30", "sleep 30"]));
    h.state_mut().pool_size = 1;
    h.get_by_label("Start").click();
    run_until(&mut h, "one task running", |h| {
        h.query_by_label_contains("Running 1").is_some()
    });
    h.get_by_label("Pool size").set_value_accesskit(2.0);
    run_until(&mut h, "two running after the resize", |h| {
        h.query_by_label_contains("Running 2").is_some()
    });
    h.get_by_label("Pause").click();
    run_until(&mut h, "the pool paused", |h| {
        h.state().status() == poolscope::app::PoolStatus::Paused
    });
    h.get_by_label("Pool size").set_value_accesskit(3.0);
    h.run_steps(4);
    assert!(
        h.query_by_label_contains("Running 2").is_some(),
        "paused: a bigger pool starts nothing new"
    );
    h.get_by_label("Resume").click();
    run_until(&mut h, "three running after Resume", |h| {
        h.query_by_label_contains("Running 3").is_some()
    });
    h.get_by_label("Terminate").click();
    run_until(&mut h, "everything ended", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.unfinished() == 0)
    });
    let record = &h.state().run.as_ref().expect("run").record;
    assert!(
        record
            .tasks()
            .all(|t| t.outcome() != Some(&poolscope::executor::Outcome::Exited(0)))
    );
    assert!(
        record.pool_sizes.len() >= 3,
        "the resizes are recorded: {:?}",
        record.pool_sizes
    );
}

#[test]
fn a_row_can_be_interrupted_killed_and_retried() {
    common::sigint_at_its_default();
    let mut h = harness(app_with(&[
        "trap 'echo caught; exit 7' INT; while :; do sleep 0.1; done",
        "sleep 30",
    ]));
    h.get_by_label("Start").click();
    run_until(&mut h, "both running", |h| {
        h.query_by_label_contains("Running 2").is_some()
    });
    // The rows' buttons (the console, below, has its own for the selected task).
    topmost(&h, "Ctrl-C").click();
    run_until(&mut h, "task 1 to end on SIGINT", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.task_at(0).expect("task").outcome().is_some())
    });
    assert_eq!(
        h.state()
            .run
            .as_ref()
            .expect("run")
            .record
            .task_at(0)
            .expect("task")
            .outcome(),
        Some(&poolscope::executor::Outcome::Exited(7)),
        "its trap ran"
    );
    topmost(&h, "Kill").click();
    h.run_steps(2);
    run_until(&mut h, "task 2 killed", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.task_at(1).expect("task").outcome().is_some())
    });
    let record = &h.state().run.as_ref().expect("run").record;
    assert_eq!(
        record.task_at(1).expect("task").outcome(),
        Some(&poolscope::executor::Outcome::Killed),
        "{:?}",
        record
            .tasks()
            .map(|t| (t.id, t.spec.name.clone(), t.outcome().cloned()))
            .collect::<Vec<_>>()
    );
    // Row 2's, below row 1's.
    h.get_all_by_label("Retry")
        .filter(|n| n.rect().top() < h.get_by_label("all tasks").rect().top())
        .max_by(|a, b| a.rect().top().total_cmp(&b.rect().top()))
        .expect("row 2's Retry")
        .click();
    // Retry runs it again as a new task of the same run, with the same command.
    run_until(&mut h, "the retried task running", |h| {
        h.state().run.as_ref().is_some_and(|r| {
            r.record.task_count() == 3
                && r.record.task_at(2).expect("task").spec.invocation
                    == r.record.task_at(1).expect("task").spec.invocation
                && r.record.task_at(2).expect("task").state == poolscope::model::TaskState::Running
        })
    });
}

/// How many of the current run's tasks `pred` holds for.
fn tasks_where(
    h: &Harness<'static, PoolscopeApp>,
    pred: impl Fn(&poolscope::model::TaskRecord) -> bool,
) -> usize {
    h.state()
        .run
        .as_ref()
        .map_or(0, |r| r.record.tasks().filter(|t| pred(t)).count())
}

/// Cancels a Slurm job when dropped (a failing test leaves nothing on the cluster).
struct CancelOnDrop(u64);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = poolscope::executor::backend::slurm::cancel(self.0, None);
    }
}

/// A run on Slurm outlives the window when the user says so, and the next window
/// follows the same array (nothing submitted twice) to its end.
#[test]
fn a_cluster_run_left_at_quit_is_reattached_at_the_next_start() {
    use poolscope::executor::backend::slurm;
    let test = "a_cluster_run_left_at_quit_is_reattached_at_the_next_start";
    if !common::slurm_answers(test) {
        return;
    }
    let runs = tempfile::tempdir().expect("tempdir");
    let root = runs.path().join("runs");
    // The tasks wait for this flag (two minutes at most, should the test fail): they are
    // mid-way when the window closes.
    let flag = runs.path().join("flag");
    let task = format!(
        "echo start; for i in $(seq 1200); do test -e {} && break; sleep 0.1; done; echo done",
        flag.display()
    );
    let options = || AppOptions {
        run_dir: Some(root.clone()),
        ..AppOptions::default()
    };
    let mut app = app_with_options(&[&task, &task, &task], options());
    app.slurm = Some(slurm::SlurmOptions::default());
    let mut h = harness(app);
    h.get_by_label("Start").click();
    let running = |h: &Harness<'static, PoolscopeApp>| {
        tasks_where(h, |t| t.state == poolscope::model::TaskState::Running)
    };
    // Two running, each with its first line seen: output is left off mid-attempt.
    run_until(&mut h, "two tasks running on the cluster", |h| {
        let first_line = |t: &poolscope::model::TaskRecord| {
            t.attempts.last().is_some_and(|a| a.stdout_bytes == 6)
        };
        running(h) == 2 && tasks_where(h, first_line) == 2
    });
    request_close(&mut h);
    h.run_steps(2);
    h.get_by_label("Leave them on the cluster and quit").click();
    h.run_steps(2);
    let dir = h
        .state()
        .run
        .as_ref()
        .and_then(|r| r.output_dir.clone())
        .expect("the run's folder");
    drop(h);
    let arrays = || {
        let mut jobs: Vec<u64> = slurm::submitted(&slurm::folder_of(&dir))
            .values()
            .map(|s| s.job)
            .collect();
        jobs.sort_unstable();
        jobs.dedup();
        jobs
    };
    let jobs = arrays();
    assert_eq!(jobs.len(), 1, "one array: {jobs:?}");
    // Should an assertion below fail, the array does not stay on the cluster.
    let _cancel = CancelOnDrop(jobs[0]);
    let elements = slurm::show_job(jobs[0]).expect("scontrol");
    assert!(
        elements.iter().all(|e| slurm::end_of(e).is_none()),
        "still on the cluster after the window closed: {elements:?}"
    );

    // A new window. (It offers only runs whose poolscope is gone, and this test process
    // made that run: it is offered as a start in another process would.)
    let mut h = harness(app_with_options(&[], options()));
    h.state_mut().offer_recovery_of(dir.clone());
    h.run_steps(2);
    assert!(
        h.query_by_label_contains("on the Slurm cluster").is_some(),
        "the next start says where the run's tasks are"
    );
    assert!(
        h.query_by_label_contains("2 on the cluster when poolscope stopped following")
            .is_some(),
        "the two running tasks are not called lost"
    );
    h.get_by_label("Resume it").click();
    run_until(&mut h, "the tasks followed again", |h| running(h) == 2);
    std::fs::write(&flag, "").expect("flag");
    run_until(&mut h, "the run to end", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.phase == poolscope::model::PoolPhase::Finished)
    });
    let record = &h.state().run.as_ref().expect("run").record;
    assert_eq!(record.task_count(), 3);
    assert_eq!(record.succeeded(), 3, "every task ended well");
    // Each task ran once, as one attempt across the gap no poolscope watched, and its
    // output file holds each line once.
    for t in record.tasks() {
        assert_eq!(t.attempts.len(), 1, "task {}: {:?}", t.id, t.attempts);
        let file = dir.join(format!("{}.1.stdout", t.id));
        assert_eq!(
            std::fs::read_to_string(&file).expect("its output"),
            "start\ndone\n",
            "task {}'s output",
            t.id
        );
    }
    assert_eq!(arrays(), jobs, "nothing was submitted again");
}

#[test]
fn closing_the_window_while_tasks_run_asks_first() {
    let mut h = harness(app_with(&["sleep 30"]));
    h.get_by_label("Start").click();
    run_until(&mut h, "the task running", |h| {
        h.query_by_label_contains("Running 1").is_some()
    });
    request_close(&mut h);
    h.run_steps(2);
    assert_eq!(
        h.state().dialog,
        Some(poolscope::app::Dialog::QuitWhileRunning)
    );
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert_eq!(h.state().dialog, None);
    assert!(
        h.query_by_label_contains("Running 1").is_some(),
        "Cancel keeps the task running"
    );
    request_close(&mut h);
    h.run_steps(2);
    h.get_by_label("Terminate and quit").click();
    run_until(&mut h, "the task ended by quitting", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.unfinished() == 0)
    });
}

/// eframe's storage, in memory.
#[derive(Default)]
struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn the_list_pool_size_and_mode_come_back_in_the_next_session() {
    let mut app = app_with(&["echo kept", "sleep 1"]);
    app.pool_size = 3;
    app.chunk_size = Some(4);
    app.workers = Some(poolscope::executor::WorkerConfig::default());
    let mut storage = MemoryStorage::default();
    eframe::App::save(&mut app, &mut storage);
    let options = AppOptions {
        run_dir: Some(RUNS.path().join("runs")),
        ..AppOptions::default()
    };
    let restored = PoolscopeApp::with_storage(options, Some(&storage));
    let commands: Vec<&str> = restored
        .rows
        .iter()
        .map(|r| r.draft.command.as_str())
        .collect();
    assert_eq!(commands, ["echo kept", "sleep 1"]);
    assert_eq!(restored.pool_size, 3);
    assert_eq!(restored.chunk_size, Some(4));
    assert!(restored.workers.is_some());
    // And the window shows them.
    let mut h = harness(restored);
    h.run_steps(2);
    assert!(h.query_by_label_contains("2 tasks in the list").is_some());
}

#[test]
fn a_long_list_from_a_file_comes_back_from_its_file_not_from_the_state_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.toml");
    std::fs::write(
        &path,
        "[pool]\nsize = 3\n[[task]]\ncommand = \"echo {}\"\nrange = [0, 200000]\n",
    )
    .expect("write");
    let options = || AppOptions {
        run_dir: Some(RUNS.path().join("runs")),
        ..AppOptions::default()
    };
    let mut app = PoolscopeApp::new(AppOptions {
        file: Some(path.clone()),
        ..options()
    });
    assert_eq!(app.row_count(), 200_000);
    let mut storage = MemoryStorage::default();
    eframe::App::save(&mut app, &mut storage);
    let state: usize = storage.0.values().map(String::len).sum();
    assert!(state < 100_000, "the state file holds {state} bytes");
    let restored = PoolscopeApp::with_storage(options(), Some(&storage));
    assert_eq!(restored.row_count(), 200_000);
    let last = restored.lazy.row(None, 199_999).expect("the last row");
    assert_eq!(last.draft.command, "echo 199999");
    assert_eq!(restored.file.as_deref(), Some(path.as_path()));
    assert_eq!(restored.pool_size, 3);
}

#[test]
fn ctrl_enter_starts_ctrl_s_saves_and_ctrl_o_asks_for_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("list.toml");
    let mut app = app_with(&["echo via keys"]);
    app.file = Some(path.clone());
    let mut h = harness(app);
    h.run_steps(2);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::S);
    h.run_steps(2);
    let text = std::fs::read_to_string(&path).expect("Ctrl+S saved to the list's file");
    assert!(text.contains("echo via keys"), "{text}");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    run_until(&mut h, "Ctrl+Enter to run the list", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.succeeded() == 1)
    });
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::O);
    // A file dialog opens, or (no desktop portal here) the window to type a path.
    run_until(&mut h, "Ctrl+O to ask for a file", |h| {
        h.state().file_dialog_pending()
            || h.state().dialog == Some(poolscope::app::Dialog::TypePath(FilePurpose::Open))
    });
}

#[test]
fn a_preset_loads_right_after_a_finished_run() {
    let mut h = harness(app_with(&["echo done"]));
    start_and_finish(&mut h, 1);
    h.get_by_label("Presets").click();
    h.run_steps(2);
    let (label, _, _) = poolscope::model::formats::presets::PRESETS[0];
    h.get_by_label(label).click();
    h.run_steps(2);
    let notice = h.state().notice.clone();
    assert!(
        notice.as_ref().is_none_or(|n| !n.is_error),
        "no error: {notice:?}"
    );
    assert!(
        h.state().rows.iter().all(|r| r.task.is_none()),
        "a fresh list to start"
    );
    h.get_by_label("Start").click();
    run_until(&mut h, "the preset to run", |h| {
        h.state().run.as_ref().is_some_and(|r| {
            r.record.task_count() > 0 && r.record.task_at(0).expect("task").spec.name != "echo done"
        })
    });
}

#[test]
fn the_editor_edits_a_task_and_names_a_bad_environment_line() {
    let mut h = harness(app_with(&["echo $GREETING"]));
    h.get_by_label("Edit").click();
    h.run_steps(2);
    assert_eq!(h.state().editing, Some(0));
    let env = "Environment (one KEY=VALUE per line, added to poolscope's)";
    type_into(&mut h, env, "GREETING=hello from the editor");
    h.run_steps(2);
    assert_eq!(
        h.state().rows[0].draft.env,
        [("GREETING".to_owned(), "hello from the editor".to_owned())]
    );
    h.get_by_label(env).type_text("\nnot a pair");
    h.run_steps(2);
    assert!(h.query_by_label_contains("environment line 2").is_some());
    assert_eq!(
        h.state().rows[0].draft.env.len(),
        1,
        "the last good value is kept"
    );
    h.get_by_label("Run in a terminal (tty)").click();
    h.run_steps(2);
    assert!(h.state().rows[0].draft.pty);
    h.get_by_label("Run in a terminal (tty)").click();
    h.run_steps(1);
    h.state_mut().rows[0].draft.env.truncate(1);
    h.get_by_label("Start").click();
    run_until(&mut h, "the task's greeting", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.succeeded() == 1)
    });
    assert!(
        h.query_by_label("Task 1 (not started)").is_none(),
        "a started task is not in the editor"
    );
    let out = h
        .state()
        .run
        .as_ref()
        .expect("run")
        .record
        .task_at(0)
        .expect("task")
        .output
        .tail_lines(1024, 10);
    assert_eq!(out.line(0).0, "hello from the editor");
}

#[test]
fn viewing_a_joblog_or_a_run_folder_never_replaces_the_saved_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let joblog = dir.path().join("big.joblog");
    let mut text = String::from(poolscope::model::formats::joblog::HEADER);
    text.push('\n');
    for seq in 1..=2000 {
        let _ = writeln!(
            text,
            "{seq}\t:\t1700000000.000\t0.5\t0\t0\t0\t0\techo viewed-{seq}"
        );
    }
    std::fs::write(&joblog, text).expect("joblog");
    let mut app = app_with(&["echo mine", "sleep 1"]);
    app.pool_size = 3;
    let mut storage = MemoryStorage::default();
    eframe::App::save(&mut app, &mut storage);
    let before = storage.0.values().map(String::len).sum::<usize>();
    app.open(&joblog);
    assert_eq!(app.rows.len(), 2000, "the joblog is on screen");
    eframe::App::save(&mut app, &mut storage);
    let saved: String = storage.0.values().cloned().collect();
    assert!(
        !saved.contains("viewed-"),
        "the viewed tasks were saved as the list"
    );
    assert!(saved.contains("echo mine"));
    assert!(
        saved.len() < before + 1000,
        "the state grew with the viewed run"
    );
    // The same from the command line (`poolscope view FILE`): the list stays.
    let options = AppOptions {
        run_dir: Some(RUNS.path().join("runs")),
        file: Some(joblog.clone()),
        ..AppOptions::default()
    };
    let mut viewer = PoolscopeApp::with_storage(options, Some(&storage));
    assert_eq!(viewer.rows.len(), 2000);
    let mut after = MemoryStorage::default();
    eframe::App::save(&mut viewer, &mut after);
    let restored = PoolscopeApp::with_storage(
        AppOptions {
            run_dir: Some(RUNS.path().join("runs")),
            ..AppOptions::default()
        },
        Some(&after),
    );
    let commands: Vec<&str> = restored
        .rows
        .iter()
        .map(|r| r.draft.command.as_str())
        .collect();
    assert_eq!(commands, ["echo mine", "sleep 1"]);
    assert_eq!(restored.pool_size, 3);
}

#[test]
fn many_windows_start_runs_on_one_run_root_at_once_without_a_collision() {
    let root = tempfile::tempdir().expect("tempdir");
    let runs = root.path().join("runs");
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let runs = runs.clone();
            scope.spawn(move || {
                for _ in 0..6 {
                    let mut app = app_with_options(
                        &["true"],
                        AppOptions {
                            run_dir: Some(runs.clone()),
                            ..AppOptions::default()
                        },
                    );
                    let ctx = egui::Context::default();
                    app.apply(poolscope::app::Action::Start, &ctx);
                    if let Some(notice) = &app.notice {
                        assert!(!notice.is_error, "{}", notice.text);
                    }
                    let deadline = Instant::now() + WAIT;
                    while !app
                        .run
                        .as_ref()
                        .is_some_and(|r| r.record.unfinished() == 0 && r.record.task_count() > 0)
                    {
                        assert!(Instant::now() < deadline, "the run did not end");
                        app.wait_for_event(Duration::from_millis(100));
                    }
                }
            });
        }
    });
    let made = std::fs::read_dir(&runs).expect("runs").count();
    assert_eq!(made, 48, "each of the 48 runs has a folder of its own");
}

#[test]
fn the_elapsed_clock_never_runs_backwards_when_the_window_falls_behind_its_pool() {
    use poolscope::executor::{Builtin, BuiltinKind, Invocation, TaskSpec, WorkerConfig};
    const TASKS: usize = 20_000;
    let noop = TaskSpec {
        invocation: Invocation::Builtin(Builtin::new(BuiltinKind::Noop, "noop")),
        ..TaskSpec::shell("noop")
    };
    let mut app = app_with(&[]);
    app.rows = (0..TASKS)
        .map(|_| Row {
            draft: TaskDraft::from_spec(&noop),
            task: None,
        })
        .collect();
    app.workers = Some(WorkerConfig::default());
    let mut h = harness(app);
    h.get_by_label("Start").click();
    h.run_steps(1);
    // The pool runs every task while no frame applies its events: the window is far
    // behind, as a busy window is behind a fast pool.
    {
        let app = h.state();
        let executor = app
            .run
            .as_ref()
            .and_then(|r| r.executor())
            .expect("live pool");
        executor.close();
        assert!(
            executor.join_timeout(WAIT).expect("closed"),
            "the pool drains"
        );
    }
    let mut shown = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        h.run_steps(1);
        let run = h.state().run.as_ref().expect("run");
        shown.push(run.now());
        if run.record.task_count() == TASKS && run.record.unfinished() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the window catches up");
    }
    assert!(
        shown.len() > 2,
        "the window needed several frames to catch up"
    );
    assert!(
        shown.windows(2).all(|w| w[0] <= w[1]),
        "Elapsed ran backwards: {shown:?}"
    );
}

#[test]
fn a_fifo_opened_in_the_window_runs_each_line_as_it_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = make_fifo(dir.path());
    let (go, wait_for_go) = std::sync::mpsc::channel::<()>();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Write as _;
            // Opening waits for the window to open its end.
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open the fifo");
            writeln!(out, "echo first line").expect("write");
            out.flush().expect("flush");
            // The second line only after the first has run: the window must not wait
            // for the writer to finish.
            wait_for_go.recv_timeout(WAIT).expect("the first line ran");
            writeln!(out, "echo second line").expect("write");
        })
    };
    let mut h = harness(app_opening(fifo.clone()));
    let succeeded = |h: &Harness<'static, PoolscopeApp>| {
        h.state()
            .run
            .as_ref()
            .map_or(0, |r| r.record.tally().succeeded)
    };
    run_until(&mut h, "the first line to run", |h| succeeded(h) == 1);
    assert!(
        h.state()
            .live_run()
            .is_some_and(poolscope::app::Run::is_open),
        "the pool waits for more lines"
    );
    assert_eq!(h.state().rows.len(), 1, "one line read so far");
    go.send(()).expect("writer waits");
    run_until(&mut h, "the second line and the end of the fifo", |h| {
        succeeded(h) == 2
            && h.query_all_by(|n| {
                n.value()
                    .is_some_and(|v| v.ends_with("closed by its writer: 2 tasks read"))
            })
            .next()
            .is_some()
    });
    writer.join().expect("writer");
    let record = &h.state().run.as_ref().expect("run").record;
    let commands: Vec<String> = record.tasks().map(|t| t.spec.name.clone()).collect();
    assert_eq!(commands, ["echo first line", "echo second line"]);
}

#[test]
fn a_fifo_line_that_is_not_utf8_is_refused_by_number_and_nothing_after_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = make_fifo(dir.path());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // A replaced byte would run another command than the one written.
            std::fs::write(&fifo, b"echo fine\nprintf 'A\xffB'\necho never\n").expect("write");
        })
    };
    let mut h = harness(app_opening(fifo.clone()));
    run_until(&mut h, "the refusal and the first line's run", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.tally().succeeded == 1)
            && h.query_all_by(|n| {
                n.value()
                    .is_some_and(|v| v.contains("tasks.fifo:2: the line is not UTF-8"))
            })
            .next()
            .is_some()
    });
    writer.join().expect("writer");
    let record = &h.state().run.as_ref().expect("run").record;
    let commands: Vec<String> = record.tasks().map(|t| t.spec.name.clone()).collect();
    assert_eq!(commands, ["echo fine"]);
}

#[test]
fn a_long_list_runs_whole_from_its_file_without_making_its_rows_and_close_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.toml");
    let tasks = 30_000;
    std::fs::write(
        &path,
        format!(
            "[pool]\nsize = 2\nmode = \"workers\"\n[[task]]\nbuiltin = \"noop\"\nrange = [0, {tasks}]\n"
        ),
    )
    .expect("write");
    let mut h = harness(app_opening(path));
    h.run_steps(1);
    assert_eq!(h.state().row_count(), tasks);
    h.get_by_label("Start").click();
    h.run_steps(2);
    // The list goes to the pool under the numbers the journal gave it: no row can be
    // added in between, and the user is told why.
    h.get_by_label("+ Add task").click();
    h.run_steps(2);
    let notice = h.state().notice.clone().expect("a notice");
    assert!(
        notice.is_error && notice.text.contains("still going to the pool"),
        "{notice:?}"
    );
    // Close while the list is going out: the whole list still runs, then the pool closes.
    h.get_by_label("Close").click();
    run_until(&mut h, "the list to finish and the pool to close", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.phase == poolscope::model::PoolPhase::Finished)
    });
    let app = h.state();
    let run = app.run.as_ref().expect("run");
    assert_eq!(run.record.task_count(), tasks);
    assert_eq!(
        run.record.succeeded(),
        tasks,
        "every task ran once and succeeded"
    );
    assert!(app.rows.is_empty(), "{} rows were made", app.rows.len());
    assert_eq!(app.row_count(), tasks);
    let last = app
        .lazy
        .row(Some(&run.record), tasks - 1)
        .expect("the last row");
    assert!(last.task.is_some(), "the last row is its task");
    let folder = run.output_dir.clone().expect("the run's folder");
    drop(h);
    let loaded = poolscope::model::store::journal::load(&folder).expect("journal");
    assert!(loaded.clean, "the journal ends cleanly");
    assert_eq!(loaded.record.task_count(), tasks);
    assert_eq!(loaded.record.succeeded(), tasks);
}

#[test]
fn bulk_add_previews_the_first_commands_and_adds_one_task_per_input() {
    let mut h = harness(app_with(&["echo keep me"]));
    h.run_steps(2);
    {
        let app = h.state_mut();
        app.template.command = "convert {} {.}.jpg".into();
        app.template.inputs = "a b.png\n\nc.png\n1.png\n2.png\n3.png\n4.png\n5.png\n".into();
    }
    h.get_by_label("Bulk add…").click();
    h.run_steps(3);
    assert!(
        h.query_by_label_contains("Preview (the first 5 of 7)")
            .is_some(),
        "the preview counts the inputs, blank lines left out"
    );
    assert!(
        h.query_by_label("convert 'a b.png' 'a b'.jpg").is_some(),
        "the first command, quoted as parallel quotes it"
    );
    h.get_by_label("Add 7 tasks").click();
    h.run_steps(3);
    let rows = &h.state().rows;
    assert_eq!(rows.len(), 8, "the list kept its row and took 7");
    assert_eq!(rows[1].draft.command, "convert 'a b.png' 'a b'.jpg");
    assert_eq!(rows[1].draft.name, "a b.png");
    assert_eq!(rows[7].draft.command, "convert 5.png 5.jpg");
    assert!(h.state().dialog.is_none(), "the window closed");
}

#[test]
fn a_task_added_from_a_terminal_is_a_row_at_once_and_what_send_types_shows_in_its_console() {
    use poolscope::executor::TaskId;
    use poolscope::model::Channel;
    let mut h = harness(app_with(&["sleep 60"]));
    h.get_by_label("Start").click();
    run_until(&mut h, "the run to listen for clients", |h| {
        h.state()
            .run
            .as_ref()
            .and_then(|r| r.output_dir.as_ref())
            .is_some_and(|d| d.join("control.sock").exists())
    });
    let dir = h
        .state()
        .run
        .as_ref()
        .and_then(|r| r.output_dir.clone())
        .expect("the run's folder");
    // A second terminal: the window answers it between frames.
    let client = |args: Vec<String>| {
        let dir = dir.clone();
        std::thread::spawn(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_poolscope"))
                .arg(&args[0])
                .arg("--run")
                .arg(&dir)
                .args(&args[1..])
                .output()
                .expect("the client ran")
        })
    };
    let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let add = client(words(&[
        "add",
        "--stdin",
        "interactive",
        "--name",
        "typed to",
        "--",
        "cat",
    ]));
    run_until(&mut h, "the added task's row", |h| {
        add.is_finished() && h.state().rows.len() == 2
    });
    let out = add.join().expect("add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    assert_eq!(
        h.state().rows[1].task,
        Some(TaskId(2)),
        "the row is the running task"
    );
    assert!(
        !h.get_all_by_label("typed to")
            .collect::<Vec<_>>()
            .is_empty(),
        "the list shows the new task by its name"
    );
    let send = client(words(&["send", "2", "hello from a terminal"]));
    run_until(&mut h, "cat to echo what was sent", |h| {
        send.is_finished()
            && h.state().run.as_ref().is_some_and(|r| {
                r.record.task(TaskId(2)).is_some_and(|t| {
                    t.output.stream_bytes(Channel::Stdout) == b"hello from a terminal\n"
                })
            })
    });
    assert!(send.join().expect("send").status.success());
    let record = &h.state().run.as_ref().expect("run").record;
    let typed: Vec<u8> = record
        .task(TaskId(2))
        .expect("task 2")
        .output
        .stream_bytes(Channel::Input);
    assert_eq!(
        typed, b"hello from a terminal\n",
        "the console shows it as typed"
    );
    let ctx = h.ctx.clone();
    h.state_mut().apply(Action::Terminate, &ctx);
    run_until(&mut h, "the run to end", |h| {
        h.state()
            .run
            .as_ref()
            .is_some_and(|r| r.record.unfinished() == 0)
    });
}

#[test]
fn the_mode_menu_offers_workers_on_the_cluster() {
    let mut h = harness(app_with(&["true"]));
    h.run_steps(2);
    // The mode menu is the one combo box showing the current mode.
    h.get_by_value("Process per task").click();
    h.run_steps(2);
    h.get_by_label("Slurm cluster (workers)").click();
    h.run_steps(2);
    assert!(h.state().workers.is_some() && h.state().slurm.is_some());
    // Both kinds of settings show: the partition and maxtasksperchild.
    assert!(h.query_by_label_contains("partition").is_some());
    assert!(h.query_by_label_contains("maxtasksperchild").is_some());
    assert!(h.query_by_value("Slurm cluster (workers)").is_some());
}
