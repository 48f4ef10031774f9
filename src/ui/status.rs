//! Counts, elapsed time, throughput and ETA (GNU parallel's `--eta`: median runtime).

use std::time::Duration;

use super::theme::duration;
use crate::app::{Action, PoolscopeApp, Run};

/// Remaining time: median runtime of finished tasks × the waves still to run.
pub fn eta(run: &Run, pool_size: usize) -> Option<Duration> {
    let median = run.record.median_runtime()?;
    let tally = run.record.tally();
    let waves = (tally.queued + tally.running).div_ceil(pool_size.max(1));
    Some(median * waves as u32)
}

impl PoolscopeApp {
    pub(super) fn status_bar(&self, ui: &mut egui::Ui, _actions: &mut [Action]) {
        ui.horizontal(|ui| {
            let Some(run) = &self.run else {
                ui.weak(format!(
                    "{} tasks in the list · press Start to run them",
                    self.rows.len()
                ));
                return;
            };
            let crate::model::run::Tally {
                queued,
                running,
                succeeded: done,
                failed,
                cancelled,
                lost,
            } = run.record.tally();
            let elapsed = run.now();
            ui.label(format!("Running {running}"));
            ui.label(format!("Queued {queued}"));
            ui.label(format!("Done {done}"));
            let failed_text = egui::RichText::new(format!("Failed {failed}"));
            ui.label(if failed > 0 {
                failed_text.color(ui.visuals().error_fg_color)
            } else {
                failed_text
            });
            if cancelled > 0 {
                ui.label(format!("Cancelled {cancelled}"));
            }
            if lost > 0 {
                ui.label(format!("Lost {lost}"))
                    .on_hover_text("running when poolscope stopped recording this run");
            }
            ui.separator();
            ui.label(format!("Elapsed {}", duration(elapsed)));
            let finished = done + failed;
            if elapsed.as_secs_f64() > 0.0 && finished > 0 {
                ui.label(format!(
                    "{:.1} tasks/s",
                    finished as f64 / elapsed.as_secs_f64()
                ));
            }
            if run.is_live()
                && queued + running > 0
                && let Some(eta) = eta(run, self.pool_size)
            {
                ui.label(format!("ETA {}", duration(eta)));
            }
        });
    }
}
