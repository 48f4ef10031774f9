//! Scripted windows (--autostart, --exit-when-done, --screenshot) and PNG capture.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{PoolscopeApp, Run, TICK};

impl PoolscopeApp {
    /// `--exit-when-done`, `--screenshot` and `--state-dump`.
    pub(super) fn automation(&mut self, ctx: &egui::Context) {
        if let Some(path) = self.options.state_dump.clone() {
            self.write_state_dump(ctx, &path);
            // A script asks for a picture by writing its path into DUMP.shot.
            let request = path.with_extension("shot");
            if let Ok(target) = std::fs::read_to_string(&request) {
                let _ = std::fs::remove_file(&request);
                save_png(ctx, PathBuf::from(target.trim()), None, None);
            }
            // Look again soon: the script's requests come from outside the event loop.
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        if self.screenshot_saved.load(Ordering::Acquire) {
            self.screenshot_saved.store(false, Ordering::Release);
            self.quit(ctx);
            return;
        }
        // A FIFO still open may bring more tasks.
        let done = self.run.as_ref().is_some_and(|r| r.active() == 0)
            && self.pending_rows() == 0
            && self.feed.is_none();
        if self.options.exit_when_done
            && done
            && let Some(executor) = self
                .live_run()
                .filter(|r| r.is_open())
                .and_then(Run::executor)
        {
            executor.close();
        }
        // A FIFO closed before its first line: nothing ran, nothing will.
        let nothing_came = self.run.is_none() && self.feed.is_none() && self.row_count() == 0;
        let finished = self.run.as_ref().is_some_and(|r| !r.is_live()) || nothing_came;
        if let Some(path) = self.options.screenshot.clone() {
            let due = match self.options.screenshot_after {
                Some(after) => self.opened.elapsed() >= after,
                None => finished,
            };
            if due && !self.scripted.screenshot_requested {
                self.scripted.screenshot_requested = true;
                self.request_screenshot(ctx, path);
            } else if !due {
                ctx.request_repaint_after(TICK);
            }
            return;
        }
        if self.options.exit_when_done && finished && !self.quitting {
            let failed = self.run.as_ref().map_or(0, |r| r.record.failed());
            self.exit_code.store(
                u8::from(failed > 0 || self.feed_failed.is_some()),
                Ordering::Release,
            );
            self.quit(ctx);
        }
    }

    pub(super) fn request_screenshot(&self, ctx: &egui::Context, path: PathBuf) {
        let saved = Arc::clone(&self.screenshot_saved);
        let exit_code = Arc::clone(&self.exit_code);
        let failed = self.run.as_ref().map_or(0, |r| r.record.failed());
        let done = move |result: Result<(), String>| {
            let code = match result {
                Ok(()) => u8::from(failed > 0),
                Err(_) => 3,
            };
            exit_code.store(code, Ordering::Release);
            saved.store(true, Ordering::Release);
        };
        let crop = if self.options.screenshot_timeline {
            self.timeline.last_rect
        } else {
            None
        };
        save_png(ctx, path, crop, Some(Box::new(done)));
    }
}

pub(super) type PngDone = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Save what the window shows (or the `crop` part of it, in points) as a PNG once the
/// next frame is rendered; `done` hears how it went.
pub(super) fn save_png(
    ctx: &egui::Context,
    path: PathBuf,
    crop: Option<egui::Rect>,
    done: Option<PngDone>,
) {
    let waker = ctx.clone();
    let pixels_per_point = ctx.pixels_per_point();
    let once = Mutex::new(Some((path, done)));
    ctx.request_screenshot(move |image| {
        let Some((path, done)) = once.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let image = match crop {
            Some(rect) => Arc::new(image.region(&rect, Some(pixels_per_point))),
            None => image,
        };
        let pixels: Vec<u8> = image
            .pixels
            .iter()
            .flat_map(egui::Color32::to_srgba_unmultiplied)
            .collect();
        let [w, h] = image.size;
        let result =
            image::save_buffer(&path, &pixels, w as u32, h as u32, image::ColorType::Rgba8)
                .map_err(|e| e.to_string());
        match &result {
            Ok(()) => log::info!("saved {}", path.display()),
            Err(e) => log::error!("cannot save {}: {e}", path.display()),
        }
        if let Some(done) = done {
            done(result);
        }
        waker.request_repaint();
    });
}

impl PoolscopeApp {
    /// What the window shows, as a scripted user would check it: the panels and how
    /// many rows and lines they have room for, the named widgets' centres (see
    /// `ui::mark`), the run (its pool size and the slots it used), and the selected
    /// task's last lines. Written atomically (a reader never sees half a file).
    fn write_state_dump(&mut self, ctx: &egui::Context, path: &std::path::Path) {
        use serde_json::json;
        let rect = |r: egui::Rect| {
            if r.is_finite() {
                json!([r.min.x, r.min.y, r.max.x, r.max.y])
            } else {
                serde_json::Value::Null
            }
        };
        let marks: serde_json::Map<String, serde_json::Value> = crate::ui::Marks::of(ctx)
            .0
            .into_iter()
            .map(|(name, r)| (name.to_owned(), json!([r.center().x, r.center().y])))
            .collect();
        let run = self.run.as_ref().map(|run| {
            let record = &run.record;
            let slots_used = record
                .attempts()
                .filter_map(|(_, a)| a.slot)
                .max()
                .map_or(0, |s| s + 1);
            let tally = record.tally();
            json!({
                "live": run.is_live(),
                "pool_size": record.pool_sizes.last().map(|&(_, s)| s),
                "largest_pool_size": record.pool_sizes.iter().map(|&(_, s)| s).max(),
                "slots_used": slots_used,
                "tasks": record.task_count(),
                "succeeded": tally.succeeded,
                "failed": tally.failed,
                "running": tally.running,
                "queued": tally.queued,
                "dir": run.output_dir.as_ref().map(|d| d.display().to_string()),
            })
        });
        let selected = self.selected.and_then(|id| {
            let task = self.run.as_ref()?.record.task(id)?;
            let lines = task.output.tail_lines(64 * 1024, 200);
            let (mut output, mut typed) = (Vec::new(), Vec::new());
            for i in 0..lines.lines.len() {
                let (text, channel) = lines.line(i);
                let text = crate::model::terminal::ansi::plain_line(&text).into_owned();
                match channel {
                    crate::model::Channel::Input => typed.push(text),
                    _ => output.push(text),
                }
            }
            Some(json!({
                "id": id.0,
                "name": task.spec.name,
                "state": crate::ui::theme::state_text(&task.state),
                "output": output,
                "typed": typed,
            }))
        });
        let focused_input =
            ctx.memory(egui::Memory::focused) == Some(crate::ui::console::input_id());
        let screen = ctx.content_rect();
        let dump = json!({
            "window": [screen.width(), screen.height()],
            "timeline": rect(self.layout.timeline),
            "list": rect(self.layout.list),
            "console": rect(self.layout.console),
            "list_rows_fit": self.layout.list_rows_fit.floor(),
            "console_lines_fit": self.layout.console_lines_fit.floor(),
            "marks": marks,
            "rows": self.row_count(),
            "last_row_command": self.rows.last().map(|r| r.draft.command.clone()),
            "pool_size": self.pool_size,
            "workers": self.workers.is_some(),
            "file": self.file.as_ref().map(|f| f.display().to_string()),
            "dialog": self.dialog.as_ref().map(|d| format!("{d:?}")),
            "notice": self.notice.as_ref().map(|n| n.text.clone()),
            "run": run,
            "selected": selected,
            "input": self.console.input,
            "input_focused": focused_input,
        });
        let text = dump.to_string();
        if text == self.last_dump {
            return;
        }
        let tmp = path.with_extension("tmp");
        let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, path));
        match written {
            Ok(()) => self.last_dump = text,
            Err(e) => log::warn!("cannot write the state dump {}: {e}", path.display()),
        }
    }
}
