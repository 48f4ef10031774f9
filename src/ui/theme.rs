//! Colours for task states, readable on dark and light themes.

use egui::{Color32, Visuals};

use crate::executor::Outcome;
use crate::model::TaskState;

pub fn state_colour(visuals: &Visuals, state: Option<&TaskState>) -> Color32 {
    let dark = visuals.dark_mode;
    let pick = |d: (u8, u8, u8), l: (u8, u8, u8)| {
        let (r, g, b) = if dark { d } else { l };
        Color32::from_rgb(r, g, b)
    };
    match state {
        None | Some(TaskState::Cancelled) => visuals.weak_text_color(),
        Some(TaskState::Lost) => pick((190, 160, 230), (110, 70, 160)),
        Some(TaskState::Queued | TaskState::Waiting(_)) => visuals.text_color(),
        Some(TaskState::Running | TaskState::Retrying) => pick((100, 170, 255), (20, 90, 200)),
        Some(TaskState::Done(outcome)) => match outcome {
            Outcome::Exited(0) => pick((110, 200, 120), (20, 130, 40)),
            Outcome::Exited(_) | Outcome::Signaled(_) | Outcome::WorkerLost(_) => {
                pick((240, 100, 90), (190, 30, 30))
            }
            Outcome::Killed | Outcome::TimedOut | Outcome::Scheduler(_) => {
                pick((240, 170, 70), (180, 100, 0))
            }
            Outcome::FailedToSpawn(_) => pick((200, 130, 240), (130, 40, 170)),
        },
    }
}

pub fn state_text(state: &TaskState) -> String {
    match state {
        TaskState::Queued => "queued".into(),
        TaskState::Waiting(state) => format!("waiting ({state})"),
        TaskState::Running => "running".into(),
        TaskState::Retrying => "retrying".into(),
        TaskState::Cancelled => "cancelled".into(),
        TaskState::Lost => "lost".into(),
        TaskState::Done(outcome) if outcome.is_success() => "done".into(),
        TaskState::Done(_) => "failed".into(),
    }
}

/// `512 KiB`, `12.3 MiB`, `1.20 GiB`.
pub fn bytes(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // a display figure
    let n = n as f64;
    if n < 1024.0 * 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0))
    }
}

/// An attempt's cost in a few words: `0.52 s CPU (48% of a core) · 12.3 MiB`.
pub fn usage(a: &crate::model::record::run::Attempt, now: std::time::Duration) -> Option<String> {
    if a.usage.peak_rss == 0 && a.usage.cpu.is_zero() {
        return None;
    }
    let share = a.usage.mean_share(a.runtime(now)) * 100.0;
    Some(format!(
        "{:.2} s CPU ({share:.0}% of a core) · peak {}",
        a.usage.cpu.as_secs_f64(),
        bytes(a.usage.peak_rss)
    ))
}

/// `1.23 s`, `2 min 05 s`, `1 h 02 min`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.2} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// A terminal colour as drawn on this theme: the usual 16 named ones (black and white
/// swapped for readable greys where they would vanish into the background), the 6×6×6
/// cube and the grey ramp.
pub fn term_colour(colour: crate::model::terminal::ansi::TermColour, dark_mode: bool) -> Color32 {
    use crate::model::terminal::ansi::TermColour;
    const NAMED: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (205, 49, 49),
        (13, 188, 121),
        (229, 229, 16),
        (36, 114, 200),
        (188, 63, 188),
        (17, 168, 205),
        (229, 229, 229),
        (102, 102, 102),
        (241, 76, 76),
        (35, 209, 139),
        (245, 245, 67),
        (59, 142, 234),
        (214, 112, 214),
        (41, 184, 219),
        (255, 255, 255),
    ];
    let (r, g, b) = match colour {
        TermColour::Rgb(r, g, b) => (r, g, b),
        TermColour::Indexed(0) if dark_mode => (110, 110, 110),
        TermColour::Indexed(7 | 15) if !dark_mode => (90, 90, 90),
        TermColour::Indexed(3 | 11) if !dark_mode => (150, 140, 0),
        TermColour::Indexed(i @ 0..=15) => NAMED[usize::from(i)],
        TermColour::Indexed(i @ 16..=231) => {
            let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            let i = i - 16;
            (level(i / 36), level((i / 6) % 6), level(i % 6))
        }
        TermColour::Indexed(i) => {
            let grey = 8 + 10 * (i - 232);
            (grey, grey, grey)
        }
    };
    Color32::from_rgb(r, g, b)
}
