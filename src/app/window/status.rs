//! Counts, elapsed time, throughput and ETA (GNU parallel's `--eta`: median runtime).

use std::time::Duration;

use crate::app::{Action, PoolscopeApp, Run};
use crate::ui::theme::duration;

/// Remaining time: the median runtime of finished tasks × the waves still queued; in
/// the last wave, what the running tasks have left of the median. `None` while only
/// tasks that wait for the user (typed input, a terminal) are left: nobody can say
/// when they end.
pub fn eta(run: &Run, pool_size: usize) -> Option<Duration> {
    let median = run.record.median_runtime()?;
    let tally = run.record.tally();
    if tally.queued > 0 {
        let waves = (tally.queued + tally.running).div_ceil(pool_size.max(1));
        return Some(median * waves as u32);
    }
    // The last wave (its tasks are found by a walk over the list, once per frame).
    let now = run.now();
    let mut left = None;
    for task in run.record.tasks_in(&crate::model::TaskState::Running) {
        if task.spec.pty || task.spec.stdin == crate::executor::StdinMode::Pipe {
            continue;
        }
        let ran = task
            .last_attempt()
            .map(|a| a.runtime(now))
            .unwrap_or_default();
        left = left.max(Some(median.saturating_sub(ran)));
    }
    left
}

impl PoolscopeApp {
    pub(in crate::app) fn status_bar(&self, ui: &mut egui::Ui, _actions: &mut [Action]) {
        ui.horizontal(|ui| {
            let Some(run) = &self.run else {
                ui.weak(format!(
                    "{} tasks in the list · press Start to run them",
                    self.row_count()
                ));
                return;
            };
            let crate::model::record::run::Tally {
                queued,
                running,
                succeeded: done,
                failed,
                cancelled,
                lost,
                killed,
            } = run.record.tally();
            // Killed by the user is not a task's own failure: counted apart.
            let failed = failed - killed;
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
            if killed > 0 {
                ui.label(format!("Killed {killed}"))
                    .on_hover_text("ended by Kill or Terminate");
            }
            if cancelled > 0 {
                ui.label(format!("Cancelled {cancelled}"));
            }
            if lost > 0 {
                ui.label(format!("Lost {lost}"))
                    .on_hover_text("running when poolscope stopped recording this run");
            }
            ui.separator();
            ui.label(format!("Elapsed {}", duration(elapsed)));
            let finished = done + failed + killed;
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
