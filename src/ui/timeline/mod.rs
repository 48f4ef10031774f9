//! The timeline: a live Gantt chart of the pool (lanes by slot, PID, host or task), with a
//! concurrency strip and a summary. Layout is a pure function (`layout.rs`); this file
//! paints it and turns pointer and keys into view changes.

pub mod layout;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2, pos2, vec2};

use crate::executor::TaskId;
use crate::model::record::stats::{self, Level, Summary};
use crate::model::{RunRecord, TaskRecord};
use layout::{Bar, BarKind, BarStatus, LaneMode, TimeView, TimelineLayout};

use super::theme::duration;

const GUTTER: f32 = 96.0;
const LANE_HEIGHT: f32 = 22.0;
/// Lanes shrink down to this to fit the panel before it has to scroll.
const MIN_LANE_HEIGHT: f32 = 7.0;
const AXIS_HEIGHT: f32 = 18.0;
const STRIP_HEIGHT: f32 = 64.0;
/// Lanes grow to fill the panel up to this (few lanes in a tall panel: thick bars, no
/// empty band above the axis).
const MAX_LANE_HEIGHT: f32 = 40.0;
/// The concurrency strip takes this share of a tall panel full of lanes, and what
/// few lanes leave, up to its maximum.
const STRIP_SHARE: f32 = 0.22;
const MAX_STRIP_HEIGHT: f32 = 160.0;
/// Below this the strip says nothing readable: a short panel shows lanes only.
const MIN_STRIP_HEIGHT: f32 = 40.0;

/// What the user has chosen about the timeline; kept across frames.
#[derive(Clone, Debug)]
pub struct TimelineState {
    pub mode: LaneMode,
    /// `None`: fit the whole run.
    pub view: Option<TimeView>,
    pub follow_live: bool,
    pub colour_by_command: bool,
    /// Where the timeline was drawn last frame (for exporting it as a picture).
    pub last_rect: Option<Rect>,
    /// The lanes' rect (in content coordinates) and the view of the last frame.
    last_lanes: Option<(Rect, TimeView)>,
    /// Height of one lane this frame: as tall as fits, between the min and the default.
    lane_h: f32,
    /// Levels computed for a record not built from events, and a number that names
    /// them (for the strip's block maxima).
    cache: Option<(CacheKey, Arc<Vec<Level>>, Summary, u64)>,
    /// A watched pool's story in words, for the record revision it was told for.
    story: Option<(u64, u64, String)>,
    index: layout::LaneIndex,
    /// The strip's block maxima, for the levels drawn last frame.
    level_blocks: layout::LevelBlocks,
}

type CacheKey = (usize, usize, Duration, usize);

impl Default for TimelineState {
    fn default() -> Self {
        Self {
            mode: LaneMode::Slot,
            view: None,
            follow_live: true,
            colour_by_command: false,
            last_rect: None,
            last_lanes: None,
            lane_h: LANE_HEIGHT,
            cache: None,
            story: None,
            index: layout::LaneIndex::default(),
            level_blocks: layout::LevelBlocks::default(),
        }
    }
}

/// Colours of bar states, readable on dark and light backgrounds.
pub fn status_colour(status: BarStatus, dark: bool) -> Color32 {
    let (on_dark, on_light) = match status {
        BarStatus::Queued => ((120, 120, 130), (170, 170, 180)),
        BarStatus::Running => ((70, 140, 230), (40, 110, 210)),
        BarStatus::Success => ((70, 170, 90), (60, 160, 80)),
        BarStatus::Failed => ((220, 70, 60), (210, 50, 40)),
        BarStatus::Killed | BarStatus::TimedOut => ((230, 150, 40), (220, 130, 20)),
        BarStatus::SpawnError => ((170, 90, 220), (140, 60, 200)),
    };
    let (r, g, b) = if dark { on_dark } else { on_light };
    Color32::from_rgb(r, g, b)
}

fn command_colour(hash: u64) -> Color32 {
    let hue = (hash % 360) as f32 / 360.0;
    egui::ecolor::Hsva::new(hue, 0.55, 0.8, 1.0).into()
}

/// `12:03:04.567 UTC` for an offset from the run's wall-clock start.
fn wall_clock(record: &RunRecord, at: Duration) -> String {
    let Some(start) = record.wall_clock_start else {
        return String::new();
    };
    let t = (start + at).duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = t.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        t.subsec_millis()
    )
}

fn tooltip(ui: &mut egui::Ui, record: &RunRecord, task: &TaskRecord, attempt: u32, now: Duration) {
    ui.strong(format!("Task {}: {}", task.id, task.spec.name));
    ui.monospace(task.spec.invocation.display_line());
    let a = task.attempts.iter().find(|a| a.number == attempt);
    egui::Grid::new("timeline-tooltip")
        .num_columns(2)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.weak(k);
                ui.label(v);
                ui.end_row();
            };
            row(
                "queued at",
                format!(
                    "+{}  ({})",
                    duration(task.queued),
                    wall_clock(record, task.queued)
                ),
            );
            if let Some(a) = a {
                if let Some(slot) = a.slot {
                    row("slot", slot.to_string());
                }
                if let Some(host) = &a.host {
                    row("host", host.clone());
                }
                if let Some(pid) = a.pid {
                    row("PID", pid.to_string());
                }
                if let Some(pid) = a.command_pid {
                    row("command PID", format!("{pid} (the worker's child)"));
                }
                if let Some(first) = task.chunk.filter(|_| a.number == 1) {
                    let len = record.chunk_len(first);
                    row(
                        "chunk",
                        format!("{len} tasks from task {first}, handed over together"),
                    );
                }
                row(
                    "started",
                    format!(
                        "+{}  ({})",
                        duration(a.started),
                        wall_clock(record, a.started)
                    ),
                );
                if let Some(end) = a.ended {
                    row(
                        "ended",
                        format!("+{}  ({})", duration(end), wall_clock(record, end)),
                    );
                }
                if a.number == 1 {
                    row(
                        "queue wait",
                        duration(a.started.saturating_sub(task.queued)),
                    );
                }
                row("runtime", duration(a.runtime(now)));
                if let Some(cost) = crate::ui::theme::usage(a, now) {
                    row("cost", cost);
                }
                row(
                    "outcome",
                    a.outcome
                        .as_ref()
                        .map_or_else(|| "running".to_owned(), ToString::to_string),
                );
                row(
                    "attempt",
                    format!("{} of {}", a.number, task.attempts.len()),
                );
            } else {
                row("state", "waiting for a slot".to_owned());
            }
        });
}

/// Counts level lists computed for records not built from events (their names).
static COMPUTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl TimelineState {
    /// The concurrency steps and the summary. A record built from events keeps both up
    /// to date itself (nothing here grows with finished tasks); an opened one is
    /// computed once and cached.
    fn cached(
        &mut self,
        record: &RunRecord,
        now: Duration,
        live: bool,
    ) -> (Option<Arc<Vec<Level>>>, Summary, u64) {
        // A live record's levels are only appended to: its uid names them (even keys);
        // computed ones get an odd number each time they are computed.
        if record.live_stats().is_some() {
            return (None, stats::summary(record, now), record.uid() << 1);
        }
        let key = (
            record.task_count(),
            record.completions().len(),
            if live { now } else { record.last_event },
            record.pool_sizes.len(),
        );
        match &self.cache {
            Some((k, levels, summary, name)) if *k == key => {
                (Some(Arc::clone(levels)), *summary, *name)
            }
            _ => {
                let levels = Arc::new(stats::levels(record, now).into_owned());
                let summary = stats::summary_with(record, now, &levels);
                let name = COMPUTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) << 1 | 1;
                self.cache = Some((key, Arc::clone(&levels), summary, name));
                (Some(levels), summary, name)
            }
        }
    }

    /// Draw the timeline; returns the task the user clicked, if any.
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        record: &RunRecord,
        now: Duration,
        live: bool,
        selected: Option<TaskId>,
    ) -> Option<TaskId> {
        let (computed, summary, levels_name) = self.cached(record, now, live);
        let levels: &[Level] = match (&computed, record.live_stats()) {
            (Some(levels), _) => levels,
            (None, Some(stats)) => &stats.levels,
            (None, None) => &[],
        };
        self.level_blocks.update(levels_name, levels);
        let top_left = ui.cursor().min;
        self.toolbar(ui, &summary, live);
        self.story_line(ui, record);
        let total = record.last_event.max(now).as_secs_f64();
        let mut view = self.view_now(record, now, live);
        let width = (ui.available_width() - GUTTER).max(50.0);
        let (lanes_height, strip_h) = self.heights(ui.available_height(), record, now, view, width);
        let lane_h = self.lane_h;

        let mut clicked = None;
        let mut view_changed = false;
        let (mut fit, mut panned) = (false, false);
        // Read before the scroll area, which takes the arrow keys for itself.
        let keys = timeline_keys(ui);
        egui::ScrollArea::vertical()
            .id_salt("timeline-lanes")
            .max_height(lanes_height)
            .min_scrolled_height(lanes_height)
            .auto_shrink([false, false])
            .scroll_source(egui::containers::scroll_area::ScrollSource {
                mouse_wheel: false,
                ..egui::containers::scroll_area::ScrollSource::ALL
            })
            .show_viewport(ui, |ui, viewport| {
                let first = (viewport.min.y / lane_h).floor().max(0.0) as usize;
                let last = (viewport.max.y / lane_h).ceil() as usize;
                let items = self.layout(record, now, view, width, first..last.max(first));
                let lanes = items.lane_count.max(1);
                let last = last.min(lanes);
                let (rect, response) = ui.allocate_exact_size(
                    vec2(ui.available_width(), lanes as f32 * lane_h),
                    Sense::click_and_drag(),
                );
                let plot = Rect::from_min_max(pos2(rect.left() + GUTTER, rect.top()), rect.max);
                self.last_lanes = Some((rect, view));
                self.paint_lanes(ui, (rect, plot), &items, first..last, (record, selected));
                paint_cpu_in_bars(ui, record, plot, &items, (view, width, lane_h));
                paint_markers(ui, record, (rect, plot), view, width);
                if live {
                    let x = plot.left() + view.x_of(now.as_secs_f64(), width);
                    ui.painter().vline(
                        x,
                        rect.y_range(),
                        Stroke::new(1.0, ui.visuals().warn_fg_color),
                    );
                }
                let hovered_bar = response.hover_pos().and_then(|p| {
                    let lane = ((p.y - rect.top()) / lane_h) as usize;
                    self.bar_under(&items, lane, p.x - plot.left(), (view, width, now))
                });
                if let Some(bar) = &hovered_bar
                    && let Some(task) = record.task(bar.task)
                {
                    response
                        .clone()
                        .on_hover_ui_at_pointer(|ui| tooltip(ui, record, &task, bar.attempt, now));
                }
                if response.clicked()
                    && let Some(bar) = &hovered_bar
                {
                    clicked = Some(bar.task);
                }
                view_changed |= interact(ui, &response, plot, &mut view, width, keys);
                fit |= response.double_clicked();
                panned |= user_panned(&response, keys);
            });
        let (strip_rect, below) = axis_and_strip(
            ui,
            (levels, &self.level_blocks),
            record,
            &mut view,
            (width, now, strip_h),
            keys,
        );
        view_changed |= below.moved;
        fit |= below.fit;
        panned |= below.panned;
        self.last_rect = Some(Rect::from_min_max(top_left, strip_rect.max));
        if view_changed || self.view.is_some() {
            self.view = Some(view);
        }
        // Zoomed out past the whole run: show the whole run, its start in view.
        if view_changed && view.span() >= TimeView::fit(total).span() {
            self.view = None;
        }
        if panned {
            // A user looking back in time does not want to be yanked to the present.
            self.follow_live = false;
        }
        if fit {
            self.view = None;
        }
        clicked
    }

    /// The view this frame: the user's, or the whole run; moved along with the present
    /// while following a live run.
    fn view_now(&self, record: &RunRecord, now: Duration, live: bool) -> TimeView {
        let total = record.last_event.max(now).as_secs_f64();
        let mut view = self.view.unwrap_or_else(|| TimeView::fit(total));
        if live && self.follow_live && self.view.is_some() {
            // While tasks run the present moves; once none is left the view holds
            // still on the last thing that happened (nothing moves under the pointer).
            let present = if record.unfinished() > 0 {
                now
            } else {
                record.last_event
            };
            view.follow(present.as_secs_f64());
        }
        view
    }

    /// The bar at `x` in `lane`; where it stands for many tasks (by slot, PID or host),
    /// the one task under the pointer.
    fn bar_under(
        &self,
        items: &TimelineLayout,
        lane: usize,
        x: f32,
        (view, width, now): (TimeView, f32, Duration),
    ) -> Option<Bar> {
        let mut bar = items.bar_at(lane, x).cloned()?;
        if bar.merged > 0 && self.mode != LaneMode::Task {
            let t = view.t_of(x, width);
            let slack = view.span() / f64::from(width);
            if let Some((task, attempt)) = self.index.attempt_at(lane, t, slack, now) {
                (bar.task, bar.attempt, bar.merged) = (task, attempt, 0);
            }
        }
        Some(bar)
    }

    /// How tall the lanes (together) and the concurrency strip are in `available`
    /// points; sets the height of one lane.
    fn heights(
        &mut self,
        available: f32,
        record: &RunRecord,
        now: Duration,
        view: TimeView,
        width: f32,
    ) -> (f32, f32) {
        // Whatever the panel's height, lanes + axis + strip fit in it: the strip gives
        // way first (down to nothing in a short panel), then lanes scroll.
        let room = (available - AXIS_HEIGHT - 8.0).max(MIN_LANE_HEIGHT);
        let strip_h = (available * STRIP_SHARE)
            .clamp(STRIP_HEIGHT, MAX_STRIP_HEIGHT)
            .min(room - 2.0 * LANE_HEIGHT);
        let strip_h = if strip_h < MIN_STRIP_HEIGHT {
            0.0
        } else {
            strip_h
        };
        let lanes_height = (room - strip_h).max(MIN_LANE_HEIGHT);
        let lane_count = self
            .layout(record, now, view, width, 0..0)
            .lane_count
            .max(1);
        self.lane_h = (lanes_height / lane_count as f32).clamp(MIN_LANE_HEIGHT, MAX_LANE_HEIGHT);
        // Few lanes in a tall panel: the axis follows the last lane, and the strip gets
        // the height the lanes do not need.
        let lanes_height = lanes_height
            .min(lane_count as f32 * self.lane_h)
            .max(self.lane_h.min(lanes_height));
        let strip_h = if strip_h > 0.0 {
            (room - lanes_height).min(MAX_STRIP_HEIGHT)
        } else {
            0.0
        };
        (lanes_height, strip_h)
    }

    /// The frame's layout; slot and PID lanes come from an index rebuilt only when the
    /// record changes.
    fn layout(
        &mut self,
        record: &RunRecord,
        now: Duration,
        view: TimeView,
        width: f32,
        lanes: std::ops::Range<usize>,
    ) -> TimelineLayout {
        if self.mode == LaneMode::Task {
            layout::layout(record, now, self.mode, view, width, lanes)
        } else {
            self.index.update(record, self.mode);
            let mut out = layout::layout_indexed(&self.index, now, view, width, lanes.clone());
            out.workers = self
                .index
                .worker_marks(record, self.mode, now, view, width, &lanes);
            out
        }
    }

    /// Where the middle of a task's (first) run bar was drawn last frame.
    pub fn bar_center(&self, record: &RunRecord, now: Duration, task: TaskId) -> Option<Pos2> {
        let (rect, view) = self.last_lanes?;
        let width = rect.width() - GUTTER;
        let items = layout::layout(record, now, self.mode, view, width, 0..usize::MAX);
        // (Rebuilt here rather than cached: this is for tests and tools, not frames.)
        let bar = items
            .bars
            .iter()
            .find(|b| b.task == task && b.kind == BarKind::Run)?;
        Some(pos2(
            rect.left() + GUTTER + f32::midpoint(bar.x0, bar.x1),
            rect.top() + (bar.lane as f32 + 0.5) * self.lane_h,
        ))
    }

    /// Two lines of fixed height (nothing wraps), so the rest of the window never moves
    /// when the numbers change.
    fn toolbar(&mut self, ui: &mut egui::Ui, summary: &Summary, live: bool) {
        ui.horizontal(|ui| {
            ui.strong("Timeline");
            for mode in LaneMode::ALL {
                ui.selectable_value(&mut self.mode, mode, mode.label());
            }
            ui.separator();
            ui.checkbox(&mut self.colour_by_command, "colour by command");
            ui.add_enabled(
                live,
                egui::Checkbox::new(&mut self.follow_live, "follow live"),
            )
            .on_hover_text("Keep the present in view while the run goes on");
            if ui
                .button("Fit")
                .on_hover_text("Show the whole run (double-click the axis)")
                .clicked()
            {
                self.view = None;
            }
        });
        let text = format!(
            "makespan {} · max {} at once · slots {:.0}% busy · total queue wait {}",
            duration(summary.makespan),
            summary.max_concurrency,
            summary.utilisation * 100.0,
            duration(summary.total_queue_wait)
        );
        ui.horizontal(|ui| {
            // The legend keeps its place on the right; the numbers take what is left.
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                bar_legend(ui);
                ui.add(egui::Label::new(egui::RichText::new(text).weak()).truncate())
                    .on_hover_text("Wheel: zoom · drag: pan · double-click: fit · +/−/←/→ keys");
            });
        });
    }

    /// A watched program's pool, in words (its markers say it was watched); told again
    /// only when the record changes.
    fn story_line(&mut self, ui: &mut egui::Ui, record: &RunRecord) {
        if record.markers.is_empty() {
            return;
        }
        let key = (record.uid(), record.revision);
        if self.story.as_ref().is_none_or(|(u, r, _)| (*u, *r) != key) {
            let story = crate::model::record::story::pool_story(record).join(" · ");
            self.story = Some((key.0, key.1, story));
        }
        if let Some((_, _, story)) = &self.story
            && !story.is_empty()
        {
            ui.add(egui::Label::new(egui::RichText::new(story.as_str()).strong()).truncate());
        }
    }

    fn paint_lanes(
        &self,
        ui: &egui::Ui,
        (rect, plot): (Rect, Rect),
        items: &TimelineLayout,
        lanes: std::ops::Range<usize>,
        (record, selected): (&RunRecord, Option<TaskId>),
    ) {
        let painter = ui.painter_at(rect);
        let visuals = ui.visuals();
        let font = FontId::proportional(11.0);
        for lane in lanes.clone() {
            let lane_h = self.lane_h;
            let y = rect.top() + lane as f32 * lane_h;
            if lane % 2 == 1 {
                painter.rect_filled(
                    Rect::from_min_size(pos2(rect.left(), y), vec2(rect.width(), lane_h)),
                    0.0,
                    visuals.faint_bg_color,
                );
            }
            // Thin lanes label every few rows so the names stay readable.
            let every = (12.0 / lane_h).ceil().max(1.0) as usize;
            if lane % every != 0 {
                continue;
            }
            if let Some((_, label)) = items.lane_labels.iter().find(|(l, _)| *l == lane) {
                // Cut in the middle: a task's number and its arguments both stay.
                let label = fit_text(&painter, label, GUTTER - 8.0, &font);
                painter.text(
                    pos2(rect.left() + 4.0, y + lane_h / 2.0),
                    Align2::LEFT_CENTER,
                    label,
                    font.clone(),
                    visuals.weak_text_color(),
                );
            }
        }
        let bar_painter = painter.with_clip_rect(plot.intersect(painter.clip_rect()));
        for mark in &items.workers {
            paint_worker(&bar_painter, plot, mark, self.lane_h, visuals);
        }
        for chunk in &items.chunks {
            paint_chunk(&bar_painter, plot, chunk, self.lane_h, visuals);
        }
        // Fills first (under outlines and labels), in one mesh filled in below.
        let fills_at = bar_painter.add(egui::Shape::Noop);
        // By slot, PID or host a merged bar stands for many tasks: the selected one is
        // outlined where it really is, after the bars.
        let exact_selection = self.mode != LaneMode::Task;
        let style = BarStyle {
            lane_h: self.lane_h,
            selected: selected.filter(|_| !exact_selection),
            by_command: self.colour_by_command,
            visuals,
            record,
        };
        let mut fills = egui::Mesh::default();
        for bar in &items.bars {
            paint_bar(&bar_painter, &mut fills, plot, bar, &style);
        }
        bar_painter.set(fills_at, egui::Shape::mesh(fills));
        if exact_selection
            && let (Some(task), Some((_, view))) =
                (selected.and_then(|t| record.task(t)), self.last_lanes)
        {
            let now = record.last_event.as_secs_f64();
            for a in &task.attempts {
                let Some(lane) = self
                    .index
                    .lane_of(self.mode, a)
                    .filter(|l| lanes.contains(l))
                else {
                    continue;
                };
                let x0 = view.x_of(a.started.as_secs_f64(), plot.width());
                let end = a.ended.map_or(now, |e| e.as_secs_f64());
                let x1 = view.x_of(end, plot.width()).max(x0 + layout::MIN_BAR_PX);
                let y = plot.top() + lane as f32 * self.lane_h;
                let r = Rect::from_min_max(
                    pos2(plot.left() + x0, y + 1.0),
                    pos2(plot.left() + x1, y + self.lane_h - 1.0),
                );
                bar_painter.rect_stroke(
                    r.expand(1.0),
                    2.0,
                    Stroke::new(2.0, visuals.strong_text_color()),
                    StrokeKind::Outside,
                );
            }
        }
    }
}

/// A persistent worker under its tasks' bars: a thin line while it lives (idle where
/// no bar covers it), its initializer as a violet block, and a tick where it ended:
/// grey when retired, red when lost.
fn paint_worker(
    painter: &egui::Painter,
    plot: Rect,
    mark: &layout::WorkerMark,
    lane_h: f32,
    visuals: &egui::Visuals,
) {
    let top = plot.top() + mark.lane as f32 * lane_h;
    let mid = top + lane_h / 2.0;
    let x = |v: f32| plot.left() + v;
    painter.line_segment(
        [pos2(x(mark.x0), mid), pos2(x(mark.x1), mid)],
        Stroke::new(1.0, visuals.weak_text_color()),
    );
    if let Some((x0, x1)) = mark.init {
        let rect = Rect::from_min_max(
            pos2(x(x0), top + lane_h * 0.25),
            pos2(x(x1), top + lane_h * 0.75),
        );
        painter.rect_filled(rect, 2.0, Color32::from_rgb(150, 110, 210));
        if rect.width() > 28.0 && lane_h >= 14.0 {
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                "init",
                FontId::proportional(10.0),
                Color32::WHITE,
            );
        }
    }
    if let Some((how, retired)) = &mark.end {
        let colour = if *retired {
            visuals.weak_text_color()
        } else {
            Color32::from_rgb(220, 60, 60)
        };
        painter.line_segment(
            [
                pos2(x(mark.x1), top + 2.0),
                pos2(x(mark.x1), top + lane_h - 2.0),
            ],
            Stroke::new(2.0, colour),
        );
        if !retired && lane_h >= 14.0 {
            painter.text(
                pos2(x(mark.x1) + 3.0, mid),
                Align2::LEFT_CENTER,
                how,
                FontId::proportional(10.0),
                colour,
            );
        }
    }
}

/// Tasks handed to a worker together (a map's chunk): a bracket along the lane's foot,
/// under their bars.
fn paint_chunk(
    painter: &egui::Painter,
    plot: Rect,
    chunk: &layout::ChunkMark,
    lane_h: f32,
    visuals: &egui::Visuals,
) {
    let foot = plot.top() + (chunk.lane + 1) as f32 * lane_h - 1.5;
    let (x0, x1) = (plot.left() + chunk.x0, plot.left() + chunk.x1);
    let stroke = Stroke::new(1.5, visuals.warn_fg_color);
    let tick = (lane_h * 0.25).min(4.0);
    painter.line_segment([pos2(x0, foot), pos2(x1, foot)], stroke);
    painter.line_segment([pos2(x0, foot), pos2(x0, foot - tick)], stroke);
    painter.line_segment([pos2(x1, foot), pos2(x1, foot - tick)], stroke);
}

/// What the user did to the view with the pointer or keys this frame.
#[derive(Default)]
struct ViewInput {
    moved: bool,
    panned: bool,
    fit: bool,
}

/// The time axis and the concurrency strip under the lanes; both pan and zoom too.
fn axis_and_strip(
    ui: &mut egui::Ui,
    levels: (&[Level], &layout::LevelBlocks),
    record: &RunRecord,
    view: &mut TimeView,
    (width, now, strip_h): (f32, Duration, f32),
    keys: TimelineKeys,
) -> (Rect, ViewInput) {
    let mut input = ViewInput::default();
    let (axis_rect, axis_response) = ui.allocate_exact_size(
        vec2(ui.available_width(), AXIS_HEIGHT),
        Sense::click_and_drag(),
    );
    let axis_plot = Rect::from_min_max(
        pos2(axis_rect.left() + GUTTER, axis_rect.top()),
        axis_rect.max,
    );
    paint_axis(ui, axis_plot, *view, width);
    input.moved |= interact(ui, &axis_response, axis_plot, view, width, keys);
    if strip_h <= 0.0 {
        return (axis_rect, input);
    }
    let (strip_rect, strip_response) =
        ui.allocate_exact_size(vec2(ui.available_width(), strip_h), Sense::click_and_drag());
    paint_strip(ui, strip_rect, levels, record, *view, width, now);
    input.moved |= interact(ui, &strip_response, strip_rect, view, width, keys);
    for response in [&axis_response, &strip_response] {
        input.panned |= user_panned(response, keys);
        input.fit |= response.double_clicked();
    }
    (strip_rect, input)
}

/// Moments of the pool as a whole (a watched program's `close()`, `join()`): a dashed
/// line across the lanes, labelled at the top; labels that would overlap are stacked.
/// Inside each run bar wide and tall enough, a line of the CPU share the task used over
/// time (bottom: idle, top: a whole core), from its usage samples.
fn paint_cpu_in_bars(
    ui: &egui::Ui,
    record: &RunRecord,
    plot: Rect,
    items: &TimelineLayout,
    (view, width, lane_h): (TimeView, f32, f32),
) {
    if lane_h < 14.0 {
        return;
    }
    let painter = ui.painter_at(plot);
    let stroke = Stroke::new(1.2, Color32::from_white_alpha(170));
    for bar in &items.bars {
        if bar.kind != BarKind::Run || bar.merged > 0 || bar.x1 - bar.x0 < 24.0 {
            continue;
        }
        let Some(attempt) = record.attempt(bar.task, bar.attempt) else {
            continue;
        };
        let shares = &attempt.usage.shares;
        if shares.len() < 2 {
            continue;
        }
        let top = plot.top() + bar.lane as f32 * lane_h + 4.0;
        let bottom = top + lane_h - 8.0;
        let line: Vec<Pos2> = shares
            .iter()
            .map(|&(at, share)| {
                let x = plot.left() + view.x_of(at.as_secs_f64(), width);
                pos2(x, bottom - share.clamp(0.0, 1.0) * (bottom - top))
            })
            .collect();
        painter.add(egui::Shape::line(line, stroke));
    }
}

fn paint_markers(
    ui: &egui::Ui,
    record: &RunRecord,
    (rect, plot): (Rect, Rect),
    view: TimeView,
    width: f32,
) {
    let painter = ui.painter_at(plot);
    let colour = ui.visuals().hyperlink_color;
    let text_colour = ui.visuals().strong_text_color();
    let plate = ui.visuals().extreme_bg_color.gamma_multiply(0.9);
    let font = FontId::proportional(10.0);
    let mut row_free = [f32::NEG_INFINITY; 3];
    for (at, label) in &record.markers {
        let t = at.as_secs_f64();
        if t < view.start || t > view.end {
            continue;
        }
        let x = plot.left() + view.x_of(t, width);
        painter.add(egui::Shape::dashed_line(
            &[pos2(x, rect.top()), pos2(x, rect.bottom())],
            Stroke::new(1.0, colour),
            4.0,
            3.0,
        ));
        let galley = painter.layout_no_wrap(label.clone(), font.clone(), text_colour);
        let size = galley.size();
        // Near the right edge a label goes left of its line: it is read whole.
        let left = if x + 2.0 + size.x > plot.right() {
            (x - 2.0 - size.x).max(plot.left())
        } else {
            x + 2.0
        };
        if let Some(row) = row_free.iter().position(|&free| free < left) {
            let y = rect.top() + 1.0 + row as f32 * 12.0;
            row_free[row] = left + size.x + 6.0;
            // On a plate of the background: readable over any bar colour.
            painter.rect_filled(
                Rect::from_min_size(pos2(left - 2.0, y), size + vec2(4.0, 0.0)),
                2.0,
                plate,
            );
            painter.galley(pos2(left, y), galley, text_colour);
        }
    }
}

fn paint_axis(ui: &egui::Ui, plot: Rect, view: TimeView, width: f32) {
    let painter = ui.painter_at(plot.expand2(vec2(0.0, 2.0)));
    let visuals = ui.visuals();
    painter.hline(
        plot.x_range(),
        plot.top(),
        Stroke::new(1.0, visuals.weak_text_color()),
    );
    for (t, label) in layout::ticks(view, width, 90.0) {
        let x = plot.left() + view.x_of(t, width);
        painter.vline(
            x,
            plot.top()..=plot.top() + 4.0,
            Stroke::new(1.0, visuals.weak_text_color()),
        );
        painter.text(
            pos2(x + 2.0, plot.top() + 3.0),
            Align2::LEFT_TOP,
            label,
            FontId::proportional(10.0),
            visuals.weak_text_color(),
        );
    }
}

/// How bars are drawn this frame.
struct BarStyle<'a> {
    lane_h: f32,
    selected: Option<TaskId>,
    by_command: bool,
    visuals: &'a egui::Visuals,
    record: &'a RunRecord,
}

/// `text` as it fits in `width` points: whole, or with its middle cut out.
fn fit_text(painter: &egui::Painter, text: &str, width: f32, font: &FontId) -> String {
    let fits = |t: &str| {
        painter
            .layout_no_wrap(t.to_owned(), font.clone(), Color32::WHITE)
            .size()
            .x
            <= width
    };
    if fits(text) {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let cut = |keep: usize| -> String {
        let head = keep.div_ceil(2);
        chars[..head]
            .iter()
            .chain(std::iter::once(&'…'))
            .chain(&chars[chars.len() - (keep - head)..])
            .collect()
    };
    // The most characters kept that still fit (a few layouts, not one per character).
    let (mut fitting, mut too_many) = (0, chars.len());
    while fitting + 1 < too_many {
        let keep = usize::midpoint(fitting, too_many);
        if fits(&cut(keep)) {
            fitting = keep;
        } else {
            too_many = keep;
        }
    }
    if fitting < 2 {
        String::new()
    } else {
        cut(fitting)
    }
}

fn paint_bar(
    painter: &egui::Painter,
    fills: &mut egui::Mesh,
    plot: Rect,
    bar: &Bar,
    style: &BarStyle<'_>,
) {
    let BarStyle {
        lane_h,
        selected,
        by_command,
        visuals,
        record,
    } = *style;
    let dark = visuals.dark_mode;
    let y = plot.top() + bar.lane as f32 * lane_h;
    let inset = (lane_h * 0.15).min(3.0);
    let r = Rect::from_min_max(
        pos2(plot.left() + bar.x0, y + inset),
        // A pixel of air at the end, so a slot handed straight to the next task shows it.
        pos2(
            plot.left() + bar.x1 - if bar.x1 - bar.x0 > 3.0 { 1.0 } else { 0.0 },
            y + lane_h - inset,
        ),
    );
    let base = if by_command && bar.kind == BarKind::Run {
        command_colour(bar.command_hash)
    } else {
        status_colour(bar.status, dark)
    };
    let fill = if bar.kind == BarKind::Queued {
        base.gamma_multiply(0.35)
    } else if bar.merged > 0 {
        // Many tasks in a few pixels: paler where the lane idled between them.
        base.gamma_multiply(0.3 + 0.7 * bar.density)
    } else {
        base
    };
    // All fills go into one mesh: thousands of bars cost one shape, not thousands.
    fills.add_colored_rect(r, fill);
    if by_command && bar.kind == BarKind::Run && bar.status != BarStatus::Success {
        // Keep the outcome readable when colouring by command: a status edge.
        painter.rect_stroke(
            r,
            2.0,
            Stroke::new(1.5, status_colour(bar.status, dark)),
            StrokeKind::Inside,
        );
    }
    if selected == Some(bar.task) {
        painter.rect_stroke(
            r.expand(1.0),
            2.0,
            Stroke::new(2.0, visuals.strong_text_color()),
            StrokeKind::Outside,
        );
    }
    if bar.kind == BarKind::Run && r.width() > 20.0 && lane_h >= 14.0 {
        // The task's name where it fits (as the list and the console name it), else
        // its number (the list's # column).
        let font = FontId::proportional(11.0);
        let room = r.width() - 8.0;
        let text = if bar.merged > 0 {
            format!("{} tasks", bar.merged + 1)
        } else {
            let task = record.task(bar.task);
            let name = task.as_ref().map_or("", |t| t.spec.name.as_str());
            let number = bar.task.to_string();
            let named = fit_text(painter, name, room, &font);
            if !name.is_empty() && named.chars().count() * 2 >= name.chars().count() {
                named
            } else {
                number
            }
        };
        painter
            .with_clip_rect(r.shrink(2.0).intersect(painter.clip_rect()))
            .text(
                pos2(r.left() + 4.0, r.center().y),
                Align2::LEFT_CENTER,
                text,
                font,
                Color32::BLACK,
            );
    }
}

/// The CPU line's colour (cores in use by the tasks).
fn cpu_colour(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(120, 200, 255)
    } else {
        Color32::from_rgb(20, 100, 200)
    }
}

/// What the bars' colours and the line inside them mean (drawn right to left).
fn bar_legend(ui: &mut egui::Ui) {
    let dark = ui.visuals().dark_mode;
    let font = FontId::proportional(11.0);
    let weak = ui.visuals().weak_text_color();
    // One label per entry ("■ failed"): its mark in the colour, its words weak.
    let item = |ui: &mut egui::Ui, mark: &str, label: &str, colour: Color32| {
        let mut job = egui::text::LayoutJob::default();
        job.append(mark, 0.0, egui::TextFormat::simple(font.clone(), colour));
        job.append(label, 4.0, egui::TextFormat::simple(font.clone(), weak));
        ui.label(job);
    };
    item(
        ui,
        "∿",
        "CPU use inside a bar (0 to 1 core)",
        Color32::from_white_alpha(200),
    );
    for (status, label) in [
        (BarStatus::SpawnError, "could not start"),
        (BarStatus::Killed, "killed / timed out"),
        (BarStatus::Failed, "failed"),
        (BarStatus::Success, "ok"),
        (BarStatus::Running, "running"),
        (BarStatus::Queued, "waiting"),
    ] {
        item(ui, "■", label, status_colour(status, dark));
    }
}

/// The strip's legend: one row over its plot (never on it), each entry in its colour.
fn strip_legend(painter: &egui::Painter, row: Rect, visuals: &egui::Visuals, scale: &StripScale) {
    let dark = visuals.dark_mode;
    let mut entries = vec![
        (
            "■ running".to_owned(),
            status_colour(BarStatus::Success, dark),
        ),
        (
            format!("— pool size ≤ {}", scale.max_pool),
            visuals.warn_fg_color,
        ),
    ];
    if let Some(cores) = scale.cores {
        entries.push((format!("— CPU in use (of {cores} cores)"), cpu_colour(dark)));
    }
    if scale.max_waiting > 0 {
        entries.push((
            format!("— waiting, on its own scale (top: {})", scale.max_waiting),
            status_colour(BarStatus::Failed, dark),
        ));
    }
    let font = FontId::proportional(10.0);
    let mut x = row.left();
    for (label, colour) in entries {
        let galley = painter.layout_no_wrap(label, font.clone(), colour);
        let width = galley.size().x;
        painter.galley(pos2(x, row.top()), galley, colour);
        x += width + 14.0;
    }
}

/// The strip's vertical scale: running tasks, the pool size and cores in use share it
/// (the left axis); waiting tasks, often far more, have a scale of their own.
struct StripScale {
    max_pool: u32,
    /// The machine's cores, when CPU use was sampled.
    cores: Option<usize>,
    top: f32,
    max_waiting: u32,
}

impl StripScale {
    /// `peak`: the most running and waiting in the run.
    fn of(record: &RunRecord, (max_running, max_waiting): (u32, u32)) -> Self {
        let max_pool = record
            .pool_sizes
            .iter()
            .map(|&(_, s)| s as u32)
            .max()
            .unwrap_or(1);
        // On 2 cores, 4 tasks at half a core each show as 4 running under a line at 2.
        let cores = (!record.cpu_in_use.is_empty()).then(num_cpus::get);
        let peak_cpu = record
            .cpu_in_use
            .iter()
            .map(|&(_, c)| c.ceil() as u32)
            .max()
            .unwrap_or(0);
        let top = max_pool
            .max(max_running)
            .max(peak_cpu)
            .max(cores.unwrap_or(0) as u32)
            .max(1) as f32;
        Self {
            max_pool,
            cores,
            top,
            max_waiting,
        }
    }
}

/// The left axis: 0, the top and a tick between, right-aligned in the gutter.
fn strip_axis(painter: &egui::Painter, plot: Rect, top: f32, colour: Color32) {
    let top = top.round().max(1.0) as u32;
    let mut ticks = vec![0, top];
    if top >= 4 {
        ticks.push(top / 2);
    }
    for v in ticks {
        let y = plot.bottom() - v as f32 / top as f32 * plot.height();
        painter.hline(plot.left() - 4.0..=plot.left(), y, Stroke::new(1.0, colour));
        painter.text(
            pos2(plot.left() - 6.0, y),
            Align2::RIGHT_CENTER,
            v.to_string(),
            FontId::proportional(10.0),
            colour,
        );
    }
    painter.vline(plot.left(), plot.y_range(), Stroke::new(1.0, colour));
}

/// Running (filled) and waiting (line) counts over time, with the pool size as a line.
fn paint_strip(
    ui: &egui::Ui,
    rect: Rect,
    (levels, blocks): (&[Level], &layout::LevelBlocks),
    record: &RunRecord,
    view: TimeView,
    width: f32,
    now: Duration,
) {
    let painter = ui.painter_at(rect);
    let visuals = ui.visuals();
    // The legend's row on top, the plot under it with its axis in the gutter.
    let legend_row = Rect::from_min_max(
        pos2(rect.left() + GUTTER, rect.top() + 1.0),
        pos2(rect.right(), rect.top() + 13.0),
    );
    let plot = Rect::from_min_max(
        pos2(rect.left() + GUTTER, legend_row.bottom() + 6.0),
        rect.max - Vec2::new(0.0, 2.0),
    );
    let scale = StripScale::of(record, blocks.peak(levels, 0..levels.len()));
    let (cores, top) = (scale.cores, scale.top);
    let y_of = |v: u32| plot.bottom() - v as f32 / top * plot.height();
    let waiting_top = scale.max_waiting.max(1) as f32;
    let y_waiting = |v: u32| plot.bottom() - v as f32 / waiting_top * plot.height();
    let x_of = |t: f64| (plot.left() + view.x_of(t, width)).clamp(plot.left(), plot.right());
    strip_legend(&painter, legend_row, visuals, &scale);
    strip_axis(&painter, plot, top, visuals.weak_text_color());
    let end_t = now.as_secs_f64().max(record.last_event.as_secs_f64());
    let running_fill = status_colour(BarStatus::Success, visuals.dark_mode).gamma_multiply(0.6);
    let waiting_stroke = Stroke::new(1.5, status_colour(BarStatus::Failed, visuals.dark_mode));
    let columns = plot.width().max(1.0) as usize;
    let peak = layout::strip_columns(levels, blocks, view, width, columns, end_t);
    let mut waiting_line: Vec<Pos2> = Vec::with_capacity(columns);
    let mut run_start: Option<(usize, u32)> = None;
    let flush = |start: (usize, u32), end: usize| {
        if start.1 > 0 {
            let x0 = plot.left() + start.0 as f32;
            painter.rect_filled(
                Rect::from_min_max(
                    pos2(x0, y_of(start.1)),
                    pos2(plot.left() + end as f32, plot.bottom()),
                ),
                0.0,
                running_fill,
            );
        }
    };
    for (c, value) in peak.iter().enumerate() {
        if let Some((running, waiting)) = value {
            waiting_line.push(pos2(plot.left() + c as f32 + 0.5, y_waiting(*waiting)));
            match run_start {
                Some(start) if start.1 == *running => {}
                Some(start) => {
                    flush(start, c);
                    run_start = Some((c, *running));
                }
                None => run_start = Some((c, *running)),
            }
        } else {
            if let Some(start) = run_start.take() {
                flush(start, c);
            }
            if waiting_line.len() > 1 {
                painter.add(egui::Shape::line(
                    std::mem::take(&mut waiting_line),
                    waiting_stroke,
                ));
            }
            waiting_line.clear();
        }
    }
    if let Some(start) = run_start {
        flush(start, columns);
    }
    if waiting_line.len() > 1 {
        painter.add(egui::Shape::line(waiting_line, waiting_stroke));
    }
    let pool_stroke = Stroke::new(1.0, visuals.warn_fg_color);
    for (i, &(at, size)) in record.pool_sizes.iter().enumerate() {
        let next = record
            .pool_sizes
            .get(i + 1)
            .map_or(end_t, |&(n, _)| n.as_secs_f64());
        painter.hline(
            x_of(at.as_secs_f64())..=x_of(next),
            y_of(size as u32),
            pool_stroke,
        );
    }
    if let Some(cores) = cores {
        paint_cpu_line(
            &painter,
            plot,
            record,
            view,
            &x_of,
            top,
            cores,
            visuals.dark_mode,
        );
    }
    painter.hline(
        plot.x_range(),
        plot.bottom(),
        Stroke::new(1.0, visuals.weak_text_color()),
    );
}

/// Cores in use over time, under a dashed line at the machine's core count; `top` is the
/// strip's scale.
#[allow(clippy::too_many_arguments)]
fn paint_cpu_line(
    painter: &egui::Painter,
    plot: Rect,
    record: &RunRecord,
    view: TimeView,
    x_of: &dyn Fn(f64) -> f32,
    top: f32,
    cores: usize,
    dark_mode: bool,
) {
    let colour = cpu_colour(dark_mode);
    let y_of = |cpu: f32| plot.bottom() - cpu / top * plot.height();
    let y_cores = y_of(cores as f32);
    painter.add(egui::Shape::dashed_line(
        &[pos2(plot.left(), y_cores), pos2(plot.right(), y_cores)],
        Stroke::new(1.0, colour.gamma_multiply(0.6)),
        4.0,
        4.0,
    ));
    let first = record
        .cpu_in_use
        .partition_point(|&(t, _)| t.as_secs_f64() < view.start);
    let line: Vec<Pos2> = record.cpu_in_use[first.saturating_sub(1)..]
        .iter()
        .take_while(|&&(t, _)| t.as_secs_f64() <= view.end)
        .map(|&(t, c)| pos2(x_of(t.as_secs_f64()), y_of(c)))
        .collect();
    if line.len() > 1 {
        painter.add(egui::Shape::line(line, Stroke::new(1.5, colour)));
    }
}

/// What the timeline's keys ask this frame: a zoom factor (1: none; +/= in, - out) and a
/// pan in spans (0: none; ← and →). Nothing while a text field has focus (the keys are
/// typed into it then).
#[derive(Clone, Copy)]
struct TimelineKeys {
    zoom: f64,
    pan: f64,
}

/// Whether the user moved the view in time (dragged it, or pressed ← or → over it): then
/// following the present stops.
fn user_panned(response: &egui::Response, keys: TimelineKeys) -> bool {
    response.dragged() || (response.hovered() && keys.pan != 0.0)
}

fn timeline_keys(ui: &egui::Ui) -> TimelineKeys {
    if ui.ctx().egui_wants_keyboard_input() {
        return TimelineKeys {
            zoom: 1.0,
            pan: 0.0,
        };
    }
    ui.input(|i| {
        let pressed = |key| i.key_pressed(key);
        TimelineKeys {
            zoom: if pressed(egui::Key::Plus) || pressed(egui::Key::Equals) {
                0.8
            } else if pressed(egui::Key::Minus) {
                1.25
            } else {
                1.0
            },
            pan: if pressed(egui::Key::ArrowLeft) {
                -0.1
            } else if pressed(egui::Key::ArrowRight) {
                0.1
            } else {
                0.0
            },
        }
    })
}

/// Wheel zooms about the pointer, drag pans, keys zoom and pan. Returns whether the view moved.
fn interact(
    ui: &egui::Ui,
    response: &egui::Response,
    plot: Rect,
    view: &mut TimeView,
    width: f32,
    keys: TimelineKeys,
) -> bool {
    let mut changed = false;
    if response.dragged() && response.drag_delta().x != 0.0 {
        view.pan_by(-f64::from(response.drag_delta().x) / f64::from(width) * view.span());
        changed = true;
    }
    if !response.hovered() {
        return changed;
    }
    let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta, i.zoom_delta()));
    let anchor = response
        .hover_pos()
        .map_or(f64::midpoint(view.start, view.end), |p| {
            view.t_of(p.x - plot.left(), width)
        });
    if scroll.y != 0.0 {
        view.zoom_about((-f64::from(scroll.y) * 0.003).exp(), anchor);
        changed = true;
    }
    if scroll.x != 0.0 {
        view.pan_by(-f64::from(scroll.x) / f64::from(width) * view.span());
        changed = true;
    }
    if (zoom - 1.0).abs() > f32::EPSILON {
        view.zoom_about(1.0 / f64::from(zoom), anchor);
        changed = true;
    }
    if (keys.zoom - 1.0).abs() > f64::EPSILON {
        view.zoom_about(keys.zoom, anchor);
        changed = true;
    }
    if keys.pan != 0.0 {
        view.pan_by(keys.pan * view.span());
        changed = true;
    }
    changed
}
