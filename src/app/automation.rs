//! Scripted windows (--autostart, --exit-when-done, --screenshot) and PNG capture.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{PoolscopeApp, Run, TICK};

impl PoolscopeApp {
    /// `--exit-when-done` and `--screenshot`.
    pub(super) fn automation(&mut self, ctx: &egui::Context) {
        if self.screenshot_saved.load(Ordering::Acquire) {
            self.screenshot_saved.store(false, Ordering::Release);
            self.quit(ctx);
            return;
        }
        let done = self.run.as_ref().is_some_and(|r| r.active() == 0) && self.pending_rows() == 0;
        if self.options.exit_when_done
            && done
            && let Some(executor) = self
                .live_run()
                .filter(|r| r.is_open())
                .and_then(Run::executor)
        {
            executor.close();
        }
        let finished = self.run.as_ref().is_some_and(|r| !r.is_live());
        if let Some(path) = self.options.screenshot.clone() {
            let due = match self.options.screenshot_after {
                Some(after) => self.opened.elapsed() >= after,
                None => finished,
            };
            if due && !self.screenshot_requested {
                self.screenshot_requested = true;
                self.request_screenshot(ctx, path);
            } else if !due {
                ctx.request_repaint_after(TICK);
            }
            return;
        }
        if self.options.exit_when_done && finished && !self.quitting {
            let failed = self.run.as_ref().map_or(0, |r| r.record.failed());
            self.exit_code
                .store(u8::from(failed > 0), Ordering::Release);
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
