//! The window opened from the command line: its icon, its size, its signals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

use crate::model::RunRecord;

use super::{GuiArgs, positive_seconds};

/// The window's icon: the desktop entry's, built in.
fn window_icon() -> egui::IconData {
    let png = include_bytes!("../../assets/install/poolscope.png");
    match image::load_from_memory_with_format(png, image::ImageFormat::Png) {
        Ok(icon) => {
            let icon = icon.into_rgba8();
            egui::IconData {
                width: icon.width(),
                height: icon.height(),
                rgba: icon.into_raw(),
            }
        }
        Err(e) => {
            log::warn!("the window icon cannot be read: {e}");
            egui::IconData::default()
        }
    }
}

fn parse_size(text: &str) -> Result<[f32; 2]> {
    let parsed = text
        .split_once('x')
        .and_then(|(w, h)| Some([w.trim().parse::<f32>().ok()?, h.trim().parse::<f32>().ok()?]));
    match parsed {
        Some([w, h]) if w >= 300.0 && h >= 200.0 => Ok([w, h]),
        _ => bail!("--size must look like 1280x800 (at least 300x200), got {text:?}"),
    }
}

/// Opens the window; returns the exit status once it closes.
pub(super) fn gui(args: &GuiArgs) -> Result<u8> {
    gui_showing(args, None)
}

/// Opens the window showing `record` (read from `args.file` already).
pub(super) fn gui_showing(args: &GuiArgs, record: Option<RunRecord>) -> Result<u8> {
    use crate::app::{AppOptions, PoolscopeApp};
    let options = AppOptions {
        file: args.file.clone(),
        autostart: args.autostart,
        exit_when_done: args.exit_when_done,
        screenshot: args.screenshot.clone(),
        screenshot_after: args
            .screenshot_after
            .map(|s| positive_seconds(s, "screenshot-after"))
            .transpose()?,
        screenshot_timeline: args.screenshot_timeline,
        watch: args.watch.clone(),
        run_dir: args.run_dir.clone(),
        state_dump: args.state_dump.clone(),
        helper: None,
        preloaded: record.map(|r| Arc::new(std::sync::Mutex::new(Some(r)))),
    };
    let size = parse_size(&args.size)?;
    if let Some(dir) = eframe::storage_dir("poolscope")
        && let Err(e) = crate::app::make_state_private(&dir)
    {
        log::warn!("cannot make {} private: {e}", dir.display());
    }
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("poolscope")
            // The desktop entry's name: docks and Wayland compositors match the window
            // to its entry and icon by it.
            .with_app_id("poolscope")
            .with_icon(Arc::new(window_icon()))
            .with_inner_size(size)
            .with_min_inner_size([640.0, 400.0]),
        renderer: eframe::Renderer::Glow,
        ..eframe::NativeOptions::default()
    };
    let exit_code = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let app_exit_code = Arc::clone(&exit_code);
    eframe::run_native(
        "poolscope",
        native,
        Box::new(move |cc| {
            let mut app = PoolscopeApp::with_storage(options, cc.storage);
            app.exit_code = app_exit_code;
            quit_on_signals(&cc.egui_ctx, &app.interrupted)?;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    Ok(exit_code.load(Ordering::Acquire))
}

/// Ctrl-C in the terminal, SIGTERM or SIGHUP: the tasks lead their own process groups,
/// so the terminal's signal never reaches them. Ask the app to terminate them and quit.
fn quit_on_signals(
    ctx: &egui::Context,
    interrupted: &Arc<AtomicBool>,
) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let ctx = ctx.clone();
    let flag = Arc::clone(interrupted);
    std::thread::Builder::new()
        .name("poolscope-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                flag.store(true, Ordering::Release);
                ctx.request_repaint();
            }
        })?;
    Ok(())
}
