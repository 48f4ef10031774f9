//! The executor and the model must never depend on the GUI toolkit.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn executor_and_model_have_no_egui() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("executor"), &mut files);
    rust_files(&root.join("model"), &mut files);
    assert!(files.len() > 5, "found the sources");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for word in ["egui", "eframe"] {
            assert!(!text.contains(word), "{} mentions {word}", file.display());
        }
    }
}

#[test]
fn the_panels_never_import_the_app() {
    // The app lays the panels out and applies their actions; a panel that reached back
    // into the app would make a circle between the two rooms.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root.join("ui"), &mut files);
    assert!(files.len() > 3, "found the panels");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            !text.contains("crate::app") && !text.contains("PoolscopeApp"),
            "{} imports the app",
            file.display()
        );
    }
}

#[test]
fn the_record_and_the_terminal_know_nothing_of_files() {
    // The model's rooms depend downwards: formats and store read the record, the record
    // reads the terminal. A record that reached into a file format or the run store
    // would make a circle, and a run could no longer be held without its files.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    for (room, below_only) in [
        ("record", &["formats", "store"][..]),
        ("terminal", &["formats", "store", "record"][..]),
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(room), &mut files);
        assert!(files.len() >= 2, "found the {room} room");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for other in below_only {
                assert!(
                    !text.contains(&format!("model::{other}::")),
                    "{} (in {room}) reaches into model::{other}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_executor_s_rooms_depend_downwards() {
    // The dispatcher drives the backends, which report through `report`; the usage
    // sampler reports there too; events and commands are the bottom. A room below that
    // named one above would make a circle: what it must never name, as a path.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/executor");
    for (room, never) in [
        ("backend", &["dispatcher::", "usage::"][..]),
        ("report.rs", &["backend::", "dispatcher::", "usage::"][..]),
        ("usage.rs", &["backend::", "dispatcher::"][..]),
        (
            "event.rs",
            &["backend::", "dispatcher::", "usage::", "report::"][..],
        ),
        ("command.rs", &["backend::", "dispatcher::", "report::"][..]),
        // The terminal spawn sits under the local backend and never reaches back.
        ("backend/local/pty.rs", &["local::"][..]),
    ] {
        let path = root.join(room);
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
        assert!(!files.is_empty(), "found {room}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            for word in never {
                assert!(
                    !text.contains(word),
                    "{} names {word}: a circle",
                    file.display()
                );
            }
        }
    }
}
