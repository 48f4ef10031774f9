//! The window's panels (console, editor, timeline), the actions they return and what
//! they share. A panel takes its own state and what it reads, and returns the user's
//! [`actions::Action`]s; nothing here knows the app (it lays the panels out, in
//! `app/window`), blocks, or talks to processes directly.

pub mod actions;
pub mod console;
pub mod editor;
pub mod theme;
pub mod timeline;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::RunRecord;

/// What the panels read of the run on screen (the app owns the run itself).
#[derive(Clone, Copy)]
pub struct RunView<'a> {
    pub record: &'a RunRecord,
    /// The run's clock.
    pub now: Duration,
    /// No pool of ours runs it (read back from a file or a folder, or a watched
    /// program's): nothing can be typed to its tasks.
    pub recorded: bool,
    /// Where every attempt's full output is kept.
    pub output_dir: Option<&'a Path>,
}

/// The timeline's splitter stops here: its toolbar, a few lanes and the axis.
pub const TIMELINE_MIN: f32 = 140.0;

/// Where the resizable panels were drawn last frame (for the window's state dump).
#[derive(Clone, Copy, Debug)]
pub struct PanelRects {
    pub timeline: egui::Rect,
    pub list: egui::Rect,
    pub console: egui::Rect,
    /// Rows of the task list in view (the body's height over a row's).
    pub list_rows_fit: f32,
    /// Lines of output the console has room for.
    pub console_lines_fit: f32,
}

impl Default for PanelRects {
    fn default() -> Self {
        Self {
            timeline: egui::Rect::NOTHING,
            list: egui::Rect::NOTHING,
            console: egui::Rect::NOTHING,
            list_rows_fit: 0.0,
            console_lines_fit: 0.0,
        }
    }
}

/// `text` cut to `max` characters (its end kept: a path's file name matters most).
pub fn short(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - (max - 1)).collect();
    format!("…{tail}")
}

/// `~/x` as the home folder's `x`; `None` for an empty path.
pub fn expand_home(typed: &str) -> Option<PathBuf> {
    if typed.is_empty() {
        return None;
    }
    match (typed.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Some(PathBuf::from(home).join(rest)),
        _ => Some(PathBuf::from(typed)),
    }
}

/// Remember where a widget is, by name, for the window's state dump (scripted clicks
/// find their target there rather than by guessing pixels).
pub fn mark(ui: &egui::Ui, name: &'static str, response: &egui::Response) {
    let rect = response.interact_rect;
    ui.ctx().data_mut(|d| {
        d.get_temp_mut_or_default::<Marks>(egui::Id::unique("marks"))
            .0
            .insert(name, rect);
    });
}

/// Named widget rects of the last frames (see [`mark`]).
#[derive(Clone, Debug, Default)]
pub struct Marks(pub std::collections::BTreeMap<&'static str, egui::Rect>);

impl Marks {
    pub fn of(ctx: &egui::Context) -> Self {
        ctx.data(|d| d.get_temp::<Marks>(egui::Id::unique("marks")))
            .unwrap_or_default()
    }
}

/// Lay out `add` in exactly the room left in `ui` and take all of it: content that
/// needs more is clipped (or scrolls, where it has a scroll area), so a panel never
/// grows from what it shows. Returns the rect it filled.
pub fn fill_exactly(ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui)) -> egui::Rect {
    let rect = ui.available_rect_before_wrap();
    let mut inner = ui.new_child(
        egui::UiBuilder::new()
            .id_salt("fill")
            .max_rect(rect)
            .layout(*ui.layout()),
    );
    inner.shrink_clip_rect(rect);
    add(&mut inner);
    ui.advance_cursor_after_rect(rect);
    rect
}
