//! The seed's scenarios, built into the binary so they work from any folder.

/// (menu label, file name, TOML text)
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "Process: one child prints its PID",
        "process.toml",
        include_str!("../../../assets/presets/process.toml"),
    ),
    (
        "Pool(4) × 5 tasks",
        "pool4.toml",
        include_str!("../../../assets/presets/pool4.toml"),
    ),
    (
        "Pool(4) × 5 tasks on 4 workers (Python's Pool)",
        "pool4_workers.toml",
        include_str!("../../../assets/presets/pool4_workers.toml"),
    ),
    (
        "Pool(4) × 5 tasks: processes and workers side by side",
        "pool4_side_by_side.toml",
        include_str!("../../../assets/presets/pool4_side_by_side.toml"),
    ),
    (
        "Pool(2, maxtasksperchild=2) × 8 tasks",
        "maxtasksperchild.toml",
        include_str!("../../../assets/presets/maxtasksperchild.toml"),
    ),
    (
        "Pool(20) × 30 tasks",
        "pool20.toml",
        include_str!("../../../assets/presets/pool20.toml"),
    ),
    (
        "subprocess.call: exit code",
        "subprocess_call.toml",
        include_str!("../../../assets/presets/subprocess_call.toml"),
    ),
    (
        "communicate: preset stdin",
        "communicate.toml",
        include_str!("../../../assets/presets/communicate.toml"),
    ),
    (
        "Interactive: type to nslookup, bc and python -i",
        "interactive.toml",
        include_str!("../../../assets/presets/interactive.toml"),
    ),
];

/// The demo a first-time user sees: the seed's Pool(4) × 5.
pub const DEFAULT_PRESET: usize = 1;

/// Python programs watched as they are (File › Watch): the seed's questions answered by
/// running them. (menu label, file name, program text)
pub const WATCH_PRESETS: &[(&str, &str, &str)] = &[
    (
        "The seed's Pool program, exactly",
        "seed_pool.py",
        include_str!("../../../assets/python/seed_pool.py"),
    ),
    (
        "Do tasks wait for close()? Sleep 1 s before close()",
        "sleep_before_close.py",
        include_str!("../../../assets/python/sleep_before_close.py"),
    ),
    (
        "Add tasks while the pool runs",
        "submit_while_running.py",
        include_str!("../../../assets/python/submit_while_running.py"),
    ),
    (
        "Pool(4) of CPU-bound tasks on this machine's cores",
        "cpu_bound_pool4.py",
        include_str!("../../../assets/python/cpu_bound_pool4.py"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_file_in_the_assets_is_in_the_menu_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/presets");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("assets/presets")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("toml"))
            })
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut listed: Vec<String> = PRESETS.iter().map(|(_, f, _)| (*f).to_owned()).collect();
        listed.sort();
        assert_eq!(
            listed, files,
            "a preset in assets/presets is missing from the menu"
        );
        for (label, file, text) in PRESETS {
            super::super::taskfile::parse(text, std::path::Path::new(file))
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }
}
