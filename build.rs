//! Names the commit a binary was built from, for `poolscope --version`: the short hash,
//! `-dirty` when the work tree differs from it, `unknown` outside a git checkout (a
//! crate downloaded from a registry).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) if !hash.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|changes| !changes.is_empty());
            format!("{hash}{}", if dirty { "-dirty" } else { "" })
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo:rustc-env=POOLSCOPE_COMMIT={commit}");
    // poolscope starts itself again and again: the orphan guard of every run, each
    // worker, each built-in task run as a process. As a position-independent executable
    // every start first rewrites its 45 000 absolute addresses (0.6 ms of a 1.7 ms start
    // here); linked at a fixed address it starts in 1.1 ms. Its libraries, stack and heap
    // are still placed at random.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    // A new commit, a checkout, or an edit changes what the version says.
    for path in [".git/HEAD", ".git/index", ".git/refs", "src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
