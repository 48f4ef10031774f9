//! What the timeline draws, as a pure function of the run record and the view: lanes,
//! bars in pixels (culled to what is visible, tiny neighbours merged), and axis ticks.
//! No painting here, so every rule is unit-tested without a window.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use crate::executor::{Outcome, TaskId};
use crate::model::{RunRecord, TaskState};

/// Narrowest bar drawn, in pixels: a 1 ms task on an hour-long run stays visible.
pub const MIN_BAR_PX: f32 = 2.0;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LaneMode {
    /// One lane per worker slot (GNU parallel `{%}`, pueue worker id).
    #[default]
    Slot,
    /// One lane per OS PID: shows worker reuse where PIDs repeat.
    Pid,
    /// One row per task, with its queued segment.
    Task,
    /// Each machine's slots together (a cluster's nodes; this machine for local runs).
    Host,
}

impl LaneMode {
    pub const ALL: [LaneMode; 4] = [
        LaneMode::Slot,
        LaneMode::Pid,
        LaneMode::Host,
        LaneMode::Task,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LaneMode::Slot => "by slot",
            LaneMode::Pid => "by PID",
            LaneMode::Task => "by task",
            LaneMode::Host => "by host",
        }
    }
}

/// The visible time range, in seconds since the run started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeView {
    pub start: f64,
    pub end: f64,
}

impl TimeView {
    /// Narrowest range a user can zoom to: one microsecond.
    pub const MIN_SPAN: f64 = 1e-6;

    /// The whole run, with a little room on both sides.
    pub fn fit(total: f64) -> Self {
        let total = total.max(1e-3);
        let pad = total * 0.02;
        Self {
            start: -pad,
            end: total + pad,
        }
    }

    pub fn span(&self) -> f64 {
        self.end - self.start
    }

    pub fn x_of(&self, t: f64, width_px: f32) -> f32 {
        ((t - self.start) / self.span() * f64::from(width_px)) as f32
    }

    pub fn t_of(&self, x: f32, width_px: f32) -> f64 {
        self.start + f64::from(x) / f64::from(width_px) * self.span()
    }

    /// Zoom by `factor` (< 1 zooms in) keeping the instant `anchor` where it is.
    pub fn zoom_about(&mut self, factor: f64, anchor: f64) {
        let factor = factor.max(Self::MIN_SPAN / self.span());
        self.start = anchor - (anchor - self.start) * factor;
        self.end = anchor + (self.end - anchor) * factor;
    }

    pub fn pan_by(&mut self, seconds: f64) {
        self.start += seconds;
        self.end += seconds;
    }

    /// Keep the span, move so that `t` is at the right edge (follow live).
    pub fn follow(&mut self, t: f64) {
        let span = self.span();
        self.end = t + span * 0.05;
        self.start = self.end - span;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// Submitted, waiting for a slot.
    Queued,
    Run,
}

/// What a bar's colour says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BarStatus {
    Queued,
    Running,
    Success,
    Killed,
    TimedOut,
    Failed,
    SpawnError,
}

impl BarStatus {
    pub fn of(outcome: Option<&Outcome>) -> Self {
        match outcome {
            None => BarStatus::Running,
            Some(Outcome::Exited(0)) => BarStatus::Success,
            Some(Outcome::Exited(_) | Outcome::Signaled(_) | Outcome::WorkerLost(_)) => {
                BarStatus::Failed
            }
            Some(Outcome::Killed | Outcome::Scheduler(_)) => BarStatus::Killed,
            Some(Outcome::TimedOut) => BarStatus::TimedOut,
            Some(Outcome::FailedToSpawn(_)) => BarStatus::SpawnError,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub lane: usize,
    pub x0: f32,
    pub x1: f32,
    pub kind: BarKind,
    pub task: TaskId,
    pub attempt: u32,
    pub status: BarStatus,
    /// A stable hash of the command, for colour-by-command.
    pub command_hash: u64,
    /// How many more bars were merged into this one (too narrow to tell apart).
    pub merged: u32,
    /// Of the time a merged bar spans, the share its tasks ran (1.0 for one task): a
    /// zoomed-out lane shows where it was dense and where it idled.
    pub density: f32,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimelineLayout {
    /// How many lanes there are in all.
    pub lane_count: usize,
    /// Labels of the lanes shown: (lane, label).
    pub lane_labels: Vec<(usize, String)>,
    pub bars: Vec<Bar>,
    /// Persistent workers' lives on the lanes shown (worker-pool mode).
    pub workers: Vec<WorkerMark>,
    /// Tasks a worker was handed together (a map's chunk), per lane.
    pub chunks: Vec<ChunkMark>,
}

/// A run of bars in one lane that were one chunk of a map.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkMark {
    pub lane: usize,
    pub x0: f32,
    pub x1: f32,
    pub first: TaskId,
    /// Bars of the chunk in view.
    pub bars: usize,
}

/// A persistent worker on its lane: alive from `x0` to `x1` (idle where no bar covers
/// it), its initializer, and how it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerMark {
    pub lane: usize,
    pub pid: u32,
    pub x0: f32,
    pub x1: f32,
    pub init: Option<(f32, f32)>,
    /// How it ended and whether on purpose (retired) rather than lost.
    pub end: Option<(String, bool)>,
}

/// Where each worker lived, in `view`, on the lanes shown: by slot its slot, by PID
/// its own lane.
fn worker_marks(
    record: &RunRecord,
    now: Duration,
    view: TimeView,
    width_px: f32,
    lanes_shown: &Range<usize>,
    lane_of: impl Fn(usize, u32) -> Option<usize>,
) -> Vec<WorkerMark> {
    let now_s = now.as_secs_f64();
    let x = |d: Duration| view.x_of(d.as_secs_f64(), width_px);
    record
        .workers
        .iter()
        .filter_map(|w| {
            let lane = lane_of(w.slot, w.pid).filter(|l| lanes_shown.contains(l))?;
            let end = w.ended.map_or(now_s, |e| e.as_secs_f64());
            if end < view.start || w.started.as_secs_f64() > view.end {
                return None;
            }
            Some(WorkerMark {
                lane,
                pid: w.pid,
                x0: x(w.started),
                x1: view.x_of(end, width_px),
                init: w.init.map(|(from, to)| {
                    let x0 = x(from);
                    let x1 = to.map_or_else(|| view.x_of(now_s, width_px), x);
                    (x0, x1.max(x0 + MIN_BAR_PX))
                }),
                end: w.how.clone(),
            })
        })
        .collect()
}

impl TimelineLayout {
    /// The bar under a point, preferring run segments over queued ones.
    pub fn bar_at(&self, lane: usize, x: f32) -> Option<&Bar> {
        let hits = self
            .bars
            .iter()
            .filter(|b| b.lane == lane && b.x0 - 1.0 <= x && x <= b.x1 + 1.0);
        hits.max_by_key(|b| (b.kind == BarKind::Run, b.merged == 0))
    }
}

/// FNV-1a over the command's words: cheap enough for every bar of every frame, and the
/// same command always gets the same colour.
fn command_hash(command: &crate::executor::Invocation) -> u64 {
    use crate::executor::Invocation;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match command {
        Invocation::Shell(line) => eat(line.as_bytes()),
        Invocation::Program { program, args } => {
            eat(program.as_bytes());
            for a in args {
                eat(b" ");
                eat(a.as_bytes());
            }
        }
        // One colour per kind of job, whatever its label.
        Invocation::Builtin(b) => {
            use std::hash::{Hash, Hasher};
            let mut kind = std::collections::hash_map::DefaultHasher::new();
            std::mem::discriminant(&b.kind).hash(&mut kind);
            eat(&kind.finish().to_le_bytes());
        }
    }
    // Folded to 32 bits: a million spans keep it in 4 bytes each.
    (h ^ (h >> 32)) & 0xffff_ffff
}

/// More PIDs than this share lanes (one lane per PID would be too thin to read).
const PACK_PIDS_ABOVE: usize = 100;

/// Lane of each attempt in PID mode, and each lane's label: a lane per PID, in the
/// order they first started; past [`PACK_PIDS_ABOVE`] PIDs, a PID takes the first lane
/// free since the last PID in it ended (as many lanes as processes were alive at once,
/// each labelled with its first PID and how many followed).
fn pid_lanes(record: &RunRecord) -> (HashMap<u32, usize>, Vec<String>) {
    // Each PID's life: from its first start to its last end (open while running).
    let mut life: HashMap<u32, (Duration, Duration)> = HashMap::new();
    let mut see = |pid: u32, from: Duration, to: Duration| {
        let e = life.entry(pid).or_insert((from, to));
        e.0 = e.0.min(from);
        e.1 = e.1.max(to);
    };
    for (_, a) in record.attempts() {
        if let Some(pid) = a.pid {
            see(pid, a.started, a.ended.unwrap_or(Duration::MAX));
        }
    }
    // A worker has its lane from its start, before (or without) any task.
    for w in &record.workers {
        see(w.pid, w.started, w.ended.unwrap_or(Duration::MAX));
    }
    let mut firsts: Vec<(Duration, u32)> = life.iter().map(|(&pid, &(t, _))| (t, pid)).collect();
    firsts.sort_unstable();
    if firsts.len() <= PACK_PIDS_ABOVE {
        let lanes = firsts
            .iter()
            .enumerate()
            .map(|(i, &(_, pid))| (pid, i))
            .collect();
        let labels = firsts
            .iter()
            .map(|&(_, pid)| format!("PID {pid}"))
            .collect();
        return (lanes, labels);
    }
    let mut lanes = HashMap::with_capacity(firsts.len());
    // Per lane: when its last PID ended, its first PID, how many PIDs it holds.
    let mut packed: Vec<(Duration, u32, usize)> = Vec::new();
    for &(start, pid) in &firsts {
        let end = life[&pid].1;
        let lane = if let Some(lane) = packed.iter().position(|&(free, _, _)| free <= start) {
            packed[lane].0 = end;
            packed[lane].2 += 1;
            lane
        } else {
            packed.push((end, pid, 1));
            packed.len() - 1
        };
        lanes.insert(pid, lane);
    }
    let labels = packed
        .iter()
        .map(|&(_, first, count)| match count {
            1 => format!("PID {first}"),
            n => format!("PID {first} +{}", n - 1),
        })
        .collect();
    (lanes, labels)
}

/// How many lanes, the labels of those shown, and (PID mode) each PID's lane.
/// Lanes by slot: as many as the largest pool size (a slot is always below the size in
/// force when it was given); a record without sizes counts its slots.
fn slot_count(record: &RunRecord) -> usize {
    match record.pool_sizes.iter().map(|&(_, s)| s).max() {
        Some(size) if record.live_stats().is_some() => size,
        size => record
            .attempts()
            .filter_map(|(_, a)| a.slot)
            .max()
            .map_or(0, |m| m + 1)
            .max(size.unwrap_or(0)),
    }
}

/// Lanes by host: each machine's slots together, machines by name (this machine, which
/// has no name in the record, first), each one's slots in order.
fn host_lanes(record: &RunRecord) -> (HashMap<String, HashMap<usize, usize>>, Vec<String>) {
    let pairs: std::collections::BTreeSet<(String, usize)> = record
        .attempts()
        .filter_map(|(_, a)| a.slot.map(|s| (a.host.clone().unwrap_or_default(), s)))
        // Workers run here and have their lanes from their start.
        .chain(record.workers.iter().map(|w| (String::new(), w.slot)))
        .collect();
    let mut lanes: HashMap<String, HashMap<usize, usize>> = HashMap::new();
    let mut labels = Vec::with_capacity(pairs.len());
    for (lane, (host, slot)) in pairs.into_iter().enumerate() {
        let machine = if host.is_empty() { "local" } else { &host };
        labels.push(format!("{} · {slot}", short_host(machine)));
        lanes.entry(host).or_default().insert(slot, lane);
    }
    (lanes, labels)
}

/// A node name that fits the lane gutter with its slot: long names keep their start and
/// their end (`compute-node-042` → `comp…e-042`), where cluster names differ.
fn short_host(host: &str) -> std::borrow::Cow<'_, str> {
    const KEEP: usize = 10;
    let chars: Vec<char> = host.chars().collect();
    if chars.len() <= KEEP {
        return host.into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 5..].iter().collect();
    format!("{head}…{tail}").into()
}

/// Which lane an attempt (or a worker) is in, for the modes whose lanes are not slots.
#[derive(Clone, Debug, Default)]
struct LaneKeys {
    by_pid: HashMap<u32, usize>,
    /// host (empty: this machine) → slot → lane.
    by_host: HashMap<String, HashMap<usize, usize>>,
}

impl LaneKeys {
    fn lane(
        &self,
        mode: LaneMode,
        slot: Option<usize>,
        pid: Option<u32>,
        host: Option<&str>,
    ) -> Option<usize> {
        match mode {
            LaneMode::Slot => slot,
            LaneMode::Pid => pid.and_then(|p| self.by_pid.get(&p).copied()),
            LaneMode::Host => {
                let slots = self.by_host.get(host.unwrap_or_default())?;
                slot.and_then(|s| slots.get(&s).copied())
            }
            LaneMode::Task => None,
        }
    }
}

fn lanes(
    record: &RunRecord,
    mode: LaneMode,
    lanes_shown: &Range<usize>,
) -> (usize, Vec<(usize, String)>, LaneKeys) {
    let shown = |n: usize| lanes_shown.start.min(n)..lanes_shown.end.min(n);
    match mode {
        LaneMode::Slot => {
            let slots = slot_count(record);
            (
                slots,
                shown(slots).map(|s| (s, format!("slot {s}"))).collect(),
                LaneKeys::default(),
            )
        }
        LaneMode::Pid => {
            let (by_pid, mut names) = pid_lanes(record);
            let count = names.len();
            let labels = shown(count)
                .map(|i| (i, std::mem::take(&mut names[i])))
                .collect();
            let keys = LaneKeys {
                by_pid,
                ..LaneKeys::default()
            };
            (count, labels, keys)
        }
        LaneMode::Host => {
            let (by_host, mut names) = host_lanes(record);
            let count = names.len();
            let labels = shown(count)
                .map(|i| (i, std::mem::take(&mut names[i])))
                .collect();
            let keys = LaneKeys {
                by_host,
                ..LaneKeys::default()
            };
            (count, labels, keys)
        }
        LaneMode::Task => {
            let n = record.task_count();
            let labels = shown(n)
                .filter_map(|i| {
                    let task = record.task_at(i)?;
                    Some((i, format!("{} {}", task.id, task.spec.name)))
                })
                .collect();
            (n, labels, LaneKeys::default())
        }
    }
}

/// Collects bars, merging a bar into its lane's previous one when both are too narrow
/// to tell apart.
struct BarSink {
    out: TimelineLayout,
    /// Index in `out.bars` of each lane's last bar.
    last_in_lane: Vec<Option<usize>>,
}

impl BarSink {
    /// Bracket `bars` bars of the chunk that starts with `first` (none: not a chunk).
    /// Brackets of different chunks too narrow to tell apart become one.
    fn chunk(&mut self, lane: usize, first: Option<TaskId>, x0: f32, x1: f32, bars: usize) {
        let Some(first) = first else {
            return;
        };
        match self.out.chunks.last_mut() {
            Some(c)
                if c.lane == lane
                    && (c.first == first
                        || (c.x1 - c.x0 < 2.0 * COLUMN_PX && x0 <= c.x1 + 1.0)) =>
            {
                c.x1 = c.x1.max(x1);
                c.bars += bars;
            }
            _ => self.out.chunks.push(ChunkMark {
                lane,
                x0,
                x1,
                first,
                bars,
            }),
        }
    }

    fn push(&mut self, bar: Bar) {
        if self.last_in_lane.len() <= bar.lane {
            self.last_in_lane.resize(bar.lane + 1, None);
        }
        if let Some(i) = self.last_in_lane[bar.lane] {
            let prev = &mut self.out.bars[i];
            let tiny = bar.x1 - bar.x0 <= MIN_BAR_PX && prev.x1 - prev.x0 <= 2.0 * MIN_BAR_PX;
            if prev.kind == bar.kind && bar.x0 <= prev.x1 + 1.0 && tiny {
                // The density of both, weighted by the tasks in each.
                let (a, b) = (prev.merged as f32 + 1.0, bar.merged as f32 + 1.0);
                prev.density = (prev.density * a + bar.density * b) / (a + b);
                prev.x1 = prev.x1.max(bar.x1);
                prev.merged += 1 + bar.merged;
                prev.status = prev.status.max(bar.status);
                return;
            }
        }
        self.last_in_lane[bar.lane] = Some(self.out.bars.len());
        self.out.bars.push(bar);
    }
}

/// One run segment in a lane, kept compact and sorted by start so a view can find its
/// first visible bar by binary search instead of walking every task.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: f64,
    /// `INFINITY` while running: the bar grows to "now".
    end: f64,
    task: TaskId,
    attempt: u32,
    status: BarStatus,
    /// [`command_hash`], which fits in 32 bits.
    command_hash: u32,
    /// The first task of the chunk its first attempt went out with; 0: none (task
    /// numbers start at 1).
    chunk_first: u64,
}

impl Span {
    /// Attempt `a` of task `task`, with the task's command hash and its chunk's first
    /// task (0: none; a retry is no longer part of its chunk).
    fn of(task: TaskId, a: &crate::model::Attempt, command_hash: u32, chunk_first: u64) -> Self {
        Self {
            start: a.started.as_secs_f64(),
            end: a.ended.map_or(f64::INFINITY, |e| e.as_secs_f64()),
            task,
            attempt: a.number,
            status: BarStatus::of(a.outcome.as_ref()),
            command_hash,
            chunk_first: if a.number == 1 { chunk_first } else { 0 },
        }
    }

    fn chunk(&self) -> Option<TaskId> {
        (self.chunk_first != 0).then_some(TaskId(self.chunk_first))
    }
}

/// A chunk's first task as a span keeps it.
fn chunk_first(chunk: Option<TaskId>) -> u64 {
    chunk.map_or(0, |c| c.0)
}

/// Width in pixels of one aggregated column: a run of tiny bars starting in it is drawn
/// as one bar.
const COLUMN_PX: f32 = 2.0;

/// One lane's spans (sorted by start, never overlapping, so their ends are sorted too)
/// and what lets a view summarise any run of them touching a few numbers: prefix sums
/// of run time, and which were not a success.
#[derive(Clone, Debug, Default)]
struct Lane {
    spans: Vec<Span>,
    /// `busy[i]`: run time of the finished spans in `spans[..=i]`.
    busy: Vec<f64>,
    /// Indices of the spans that did not succeed (running, failed, killed...), in order.
    unlike_success: Vec<u32>,
}

/// The first index at or after `from` where `before` turns false (it must be true, then
/// false, along the slice), searched outwards from `from`: the answer is usually a few
/// items on, and a binary search over the whole rest of a million-span lane would miss
/// the cache at every step.
fn gallop<T>(items: &[T], from: usize, before: impl Fn(&T) -> bool) -> usize {
    let mut low = from;
    let mut step = 1;
    while low + step < items.len() && before(&items[low + step]) {
        low += step;
        step *= 2;
    }
    let high = (low + step).min(items.len());
    low + items[low..high].partition_point(before)
}

/// Run time a span adds to its lane's prefix sums (a running one adds nothing yet).
fn finished_len(span: &Span) -> f64 {
    if span.end.is_finite() {
        span.end - span.start
    } else {
        0.0
    }
}

impl Lane {
    fn push(&mut self, span: Span) {
        let before = self.busy.last().copied().unwrap_or(0.0);
        self.busy.push(before + finished_len(&span));
        if span.status != BarStatus::Success {
            self.unlike_success.push(self.spans.len() as u32);
        }
        self.spans.push(span);
    }

    /// Replace span `i` (an attempt that ended) and bring the summaries up to date.
    fn set(&mut self, i: usize, span: Span) {
        let was = std::mem::replace(&mut self.spans[i], span);
        if (was.status == BarStatus::Success) != (span.status == BarStatus::Success) {
            let at = self.unlike_success.partition_point(|&k| (k as usize) < i);
            if span.status == BarStatus::Success {
                self.unlike_success.remove(at);
            } else {
                self.unlike_success.insert(at, i as u32);
            }
        }
        let mut acc = if i == 0 { 0.0 } else { self.busy[i - 1] };
        for (busy, span) in self.busy[i..].iter_mut().zip(&self.spans[i..]) {
            acc += finished_len(span);
            *busy = acc;
        }
    }

    fn sort(&mut self) {
        self.spans.sort_by(|a, b| a.start.total_cmp(&b.start));
        let spans = std::mem::take(&mut self.spans);
        self.busy.clear();
        self.unlike_success.clear();
        for span in spans {
            self.push(span);
        }
    }

    /// The worst status, the latest end and the run time of `spans[range]`.
    fn summary(&self, range: Range<usize>) -> (BarStatus, f64, f64) {
        let busy =
            self.busy[range.end - 1] - range.start.checked_sub(1).map_or(0.0, |i| self.busy[i]);
        let end = self.spans[range.end - 1].end;
        let from = self
            .unlike_success
            .partition_point(|&k| (k as usize) < range.start);
        let others = self.unlike_success[from..]
            .iter()
            .take_while(|&&k| (k as usize) < range.end);
        let (mut count, mut status) = (0, BarStatus::Queued);
        for &k in others {
            count += 1;
            status = status.max(self.spans[k as usize].status);
        }
        if count < range.len() {
            status = status.max(BarStatus::Success);
        }
        (status, end, busy)
    }
}

/// Lanes for slot, PID and host modes. By slot, a live record's changes are applied as
/// they come (work per frame follows what changed, not how many tasks there are); by PID
/// or host, lanes are rebuilt per record revision (a new PID or node can reorder them).
#[derive(Clone, Debug, Default)]
pub struct LaneIndex {
    key: Option<(u64, usize, LaneMode)>,
    lanes: Vec<Lane>,
    labels: Vec<String>,
    /// Slot mode: (record, lane count) the lanes were built for, and how many of the
    /// record's changes they include.
    live: Option<(u64, usize)>,
    applied: usize,
    /// PID and host modes: each attempt's lane.
    keys: LaneKeys,
}

impl LaneIndex {
    /// The attempt drawn at `t` seconds in `lane` (or the nearest within `slack`
    /// seconds), exactly, where the view merged it with its neighbours.
    pub fn attempt_at(
        &self,
        lane: usize,
        t: f64,
        slack: f64,
        now: Duration,
    ) -> Option<(TaskId, u32)> {
        let spans = &self.lanes.get(lane)?.spans;
        let now_s = now.as_secs_f64();
        let from = spans.partition_point(|s| s.end.min(now_s) < t - slack);
        let distance = |s: &Span| (s.start - t).max(t - s.end.min(now_s)).max(0.0);
        spans[from..]
            .iter()
            .take_while(|s| s.start <= t + slack)
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
            .map(|s| (s.task, s.attempt))
    }

    /// The lane an attempt is drawn in, in `mode` (slot, PID or host).
    pub fn lane_of(&self, mode: LaneMode, attempt: &crate::model::Attempt) -> Option<usize> {
        self.keys
            .lane(mode, attempt.slot, attempt.pid, attempt.host.as_deref())
            .filter(|&l| l < self.lanes.len())
    }

    /// The workers' lives for [`layout_indexed`]'s lanes.
    pub fn worker_marks(
        &self,
        record: &RunRecord,
        mode: LaneMode,
        now: Duration,
        view: TimeView,
        width_px: f32,
        lanes_shown: &Range<usize>,
    ) -> Vec<WorkerMark> {
        if record.workers.is_empty() {
            return Vec::new();
        }
        worker_marks(record, now, view, width_px, lanes_shown, |slot, pid| {
            self.keys.lane(mode, Some(slot), Some(pid), None)
        })
    }

    /// Bring the lanes up to date with the record.
    pub fn update(&mut self, record: &RunRecord, mode: LaneMode) {
        if mode == LaneMode::Slot && record.live_stats().is_some() {
            let count = slot_count(record);
            if self.live == Some((record.uid(), count))
                && record.changes_since(self.applied).is_some()
            {
                self.apply_changes(record);
                return;
            }
            self.rebuild(record, mode);
            self.live = Some((record.uid(), count));
            self.applied = record.changes_total();
            return;
        }
        self.live = None;
        let key = (record.revision, record.task_count(), mode);
        if self.key == Some(key) {
            return;
        }
        self.key = Some(key);
        self.rebuild(record, mode);
    }

    /// Attempts that started or ended since the last update: new spans go at the end
    /// of their lane (starts come in time order), ended ones are updated in place.
    fn apply_changes(&mut self, record: &RunRecord) {
        let changes = record.changes_since(self.applied).unwrap_or_default();
        self.applied = record.changes_total();
        for &id in changes {
            // Read by position, as a rebuild reads: a done task is not made whole.
            let Some(position) = record.position(id) else {
                continue;
            };
            let Some(invocation) = record.invocation_at(position) else {
                continue;
            };
            let hash = command_hash(&invocation) as u32;
            let chunk = chunk_first(record.chunk_at(position));
            for a in record.attempts_at(position).iter().rev().take(2) {
                let Some(lane) = a.slot.filter(|&l| l < self.lanes.len()) else {
                    continue;
                };
                let span = Span::of(id, a, hash, chunk);
                // Spans sort by start: its own is found by binary search, so nothing
                // per attempt is kept beside the lanes.
                let lane_spans = &mut self.lanes[lane];
                let from = lane_spans.spans.partition_point(|s| s.start < span.start);
                let found = lane_spans.spans[from..]
                    .iter()
                    .take_while(|s| s.start <= span.start)
                    .position(|s| (s.task, s.attempt) == (id, a.number));
                if let Some(at) = found {
                    if lane_spans.spans[from + at] != span {
                        lane_spans.set(from + at, span);
                    }
                } else {
                    if lane_spans
                        .spans
                        .last()
                        .is_some_and(|last| last.start > span.start)
                    {
                        // Out of order (never from one executor): start over.
                        self.live = None;
                    }
                    lane_spans.push(span);
                }
            }
        }
    }

    fn rebuild(&mut self, record: &RunRecord, mode: LaneMode) {
        self.lanes.clear();
        let (count, labels, keys) = lanes(record, mode, &(0..usize::MAX));
        self.labels = labels.into_iter().map(|(_, l)| l).collect();
        self.keys = keys;
        self.lanes.resize_with(count, Lane::default);
        // By position: a done task is read from its row, not made whole.
        for i in 0..record.task_count() {
            let (Some(id), Some(invocation)) = (record.id_at(i), record.invocation_at(i)) else {
                continue;
            };
            let hash = command_hash(&invocation) as u32;
            let chunk = chunk_first(record.chunk_at(i));
            for a in record.attempts_at(i).iter() {
                let lane = self.keys.lane(mode, a.slot, a.pid, a.host.as_deref());
                let Some(lane) = lane.filter(|&l| l < count) else {
                    continue;
                };
                self.lanes[lane].push(Span::of(id, a, hash, chunk));
            }
        }
        for lane in &mut self.lanes {
            lane.sort();
        }
    }
}

/// Like [`layout`], for slot and PID modes, from a prebuilt [`LaneIndex`]: only the
/// bars in view are visited.
pub fn layout_indexed(
    index: &LaneIndex,
    now: Duration,
    view: TimeView,
    width_px: f32,
    lanes_shown: Range<usize>,
) -> TimelineLayout {
    let now_s = now.as_secs_f64();
    let count = index.lanes.len();
    let shown = lanes_shown.start.min(count)..lanes_shown.end.min(count);
    let mut sink = BarSink {
        out: TimelineLayout {
            lane_count: count,
            lane_labels: shown
                .clone()
                .map(|l| (l, index.labels[l].clone()))
                .collect(),
            bars: Vec::new(),
            workers: Vec::new(),
            chunks: Vec::new(),
        },
        last_in_lane: Vec::new(),
    };
    for lane in shown {
        let lane_spans = &index.lanes[lane];
        let spans = &lane_spans.spans;
        // Within a lane runs never overlap, so ends are sorted like starts.
        let mut i = spans.partition_point(|s| s.end.min(now_s) < view.start);
        while let Some(span) = spans.get(i) {
            if span.start > view.end {
                break;
            }
            let x0 = view.x_of(span.start, width_px);
            let x1 = view.x_of(span.end.min(now_s), width_px);
            // Zoomed out, the tiny bars starting in this pixel column become one bar,
            // found by binary search: a frame costs the lane's width, not its tasks.
            if x1 - x0 < MIN_BAR_PX {
                let column_end = view.t_of(x0.floor() + COLUMN_PX, width_px);
                let j = gallop(&lane_spans.spans, i, |s| s.start < column_end);
                if j - i > 1 {
                    let (status, end, busy) = lane_spans.summary(i..j);
                    let end = end.min(now_s);
                    let x1 = view.x_of(end, width_px);
                    if x1 - x0 <= 2.0 * COLUMN_PX {
                        let first = spans[i].chunk().or(spans[j - 1].chunk());
                        sink.chunk(lane, first, x0, x1.max(x0 + MIN_BAR_PX), j - i);
                        sink.push(Bar {
                            lane,
                            x0,
                            x1: x1.max(x0 + MIN_BAR_PX),
                            kind: BarKind::Run,
                            task: span.task,
                            attempt: span.attempt,
                            status,
                            command_hash: u64::from(span.command_hash),
                            merged: (j - i - 1) as u32,
                            density: (busy / (end - span.start).max(1e-12)).clamp(0.0, 1.0) as f32,
                        });
                        i = j;
                        continue;
                    }
                }
            }
            let x1 = x1.max(x0 + MIN_BAR_PX);
            sink.chunk(lane, span.chunk(), x0, x1, 1);
            sink.push(Bar {
                lane,
                x0,
                x1,
                kind: BarKind::Run,
                task: span.task,
                attempt: span.attempt,
                status: span.status,
                command_hash: u64::from(span.command_hash),
                merged: 0,
                density: 1.0,
            });
            i += 1;
        }
    }
    sink.out
}

/// Everything to draw in `view` on a strip `width_px` wide, for lanes in `lanes_shown`.
pub fn layout(
    record: &RunRecord,
    now: Duration,
    mode: LaneMode,
    view: TimeView,
    width_px: f32,
    lanes_shown: Range<usize>,
) -> TimelineLayout {
    if mode != LaneMode::Task {
        let mut index = LaneIndex::default();
        index.update(record, mode);
        let mut out = layout_indexed(&index, now, view, width_px, lanes_shown.clone());
        out.workers = index.worker_marks(record, mode, now, view, width_px, &lanes_shown);
        return out;
    }
    let now_s = now.as_secs_f64();
    let (lane_count, lane_labels, keys) = lanes(record, mode, &lanes_shown);
    let mut sink = BarSink {
        out: TimelineLayout {
            lane_count,
            lane_labels,
            bars: Vec::new(),
            workers: Vec::new(),
            chunks: Vec::new(),
        },
        last_in_lane: Vec::new(),
    };
    let visible = |t0: f64, t1: f64| t1 >= view.start && t0 <= view.end;
    let to_px = |t0: f64, t1: f64| {
        let x0 = view.x_of(t0, width_px);
        let x1 = view.x_of(t1, width_px).max(x0 + MIN_BAR_PX);
        (x0, x1)
    };
    let tasks: Box<dyn Iterator<Item = (usize, crate::model::TaskRef<'_>)>> = match mode {
        // One lane per task: only the rows on screen are looked at.
        LaneMode::Task => Box::new(
            lanes_shown
                .clone()
                .map_while(|i| record.task_at(i).map(|task| (i, task))),
        ),
        _ => Box::new(record.tasks().enumerate()),
    };
    for (index, task) in tasks {
        let hash = command_hash(&task.spec.invocation);
        if mode == LaneMode::Task {
            let waited_until = task.attempts.first().map_or_else(
                || {
                    if task.state == TaskState::Queued {
                        now_s
                    } else {
                        task.queued.as_secs_f64()
                    }
                },
                |a| a.started.as_secs_f64(),
            );
            let queued = task.queued.as_secs_f64();
            if waited_until > queued && visible(queued, waited_until) {
                let (x0, x1) = to_px(queued, waited_until);
                sink.push(Bar {
                    lane: index,
                    x0,
                    x1,
                    kind: BarKind::Queued,
                    task: task.id,
                    attempt: 1,
                    status: BarStatus::Queued,
                    command_hash: hash,
                    merged: 0,
                    density: 1.0,
                });
            }
        }
        for a in &task.attempts {
            let lane = match mode {
                LaneMode::Task => Some(index),
                _ => keys.lane(mode, a.slot, a.pid, a.host.as_deref()),
            };
            let Some(lane) = lane.filter(|l| lanes_shown.contains(l)) else {
                continue;
            };
            let (t0, t1) = (
                a.started.as_secs_f64(),
                a.ended.map_or(now_s, |e| e.as_secs_f64()),
            );
            if !visible(t0, t1) {
                continue;
            }
            let (x0, x1) = to_px(t0, t1);
            sink.push(Bar {
                lane,
                x0,
                x1,
                kind: BarKind::Run,
                task: task.id,
                attempt: a.number,
                status: BarStatus::of(a.outcome.as_ref()),
                command_hash: hash,
                merged: 0,
                density: 1.0,
            });
        }
    }
    sink.out
}

/// Levels summarised per block of this many for the strip.
const LEVEL_BLOCK: usize = 64;

/// The most running and waiting per block of concurrency levels, extended as levels are
/// appended, so the strip costs its width per frame, not the run's length.
#[derive(Clone, Debug, Default)]
pub struct LevelBlocks {
    key: u64,
    blocks: Vec<(u32, u32)>,
}

impl LevelBlocks {
    /// Bring the blocks up to date with `levels`; `key` names the list (a new key: a
    /// different list, built again). Only blocks before the last level are summarised:
    /// the last level can still change in place.
    pub fn update(&mut self, key: u64, levels: &[crate::model::record::stats::Level]) {
        if key != self.key || levels.len() < self.blocks.len() * LEVEL_BLOCK {
            self.key = key;
            self.blocks.clear();
        }
        while (self.blocks.len() + 1) * LEVEL_BLOCK < levels.len() {
            let from = self.blocks.len() * LEVEL_BLOCK;
            let peak = levels[from..from + LEVEL_BLOCK]
                .iter()
                .fold((0, 0), |(r, w), l| (r.max(l.running), w.max(l.waiting)));
            self.blocks.push(peak);
        }
    }

    /// The most running and waiting in `levels[range]`.
    pub fn peak(
        &self,
        levels: &[crate::model::record::stats::Level],
        range: Range<usize>,
    ) -> (u32, u32) {
        let (mut running, mut waiting) = (0, 0);
        let mut i = range.start;
        while i < range.end {
            let block = i / LEVEL_BLOCK;
            let (r, w) = if i.is_multiple_of(LEVEL_BLOCK)
                && i + LEVEL_BLOCK <= range.end
                && block < self.blocks.len()
            {
                i += LEVEL_BLOCK;
                self.blocks[block]
            } else {
                i += 1;
                (levels[i - 1].running, levels[i - 1].waiting)
            };
            running = running.max(r);
            waiting = waiting.max(w);
        }
        (running, waiting)
    }
}

/// The concurrency strip at one column per pixel: the most running and waiting seen
/// in each column (`None` where the run has no data). The levels starting in one column
/// are summarised by binary search and block maxima, so drawing costs the strip's width,
/// not the number of steps.
pub fn strip_columns(
    levels: &[crate::model::record::stats::Level],
    blocks: &LevelBlocks,
    view: TimeView,
    width_px: f32,
    columns: usize,
    end: f64,
) -> Vec<Option<(u32, u32)>> {
    let columns = columns.max(1);
    let mut peak: Vec<Option<(u32, u32)>> = vec![None; columns];
    let column_of = |t: f64| (view.x_of(t, width_px).max(0.0) as usize).min(columns - 1);
    let raise = |slot: &mut Option<(u32, u32)>, (running, waiting): (u32, u32)| {
        *slot = Some(slot.map_or((running, waiting), |(r, w)| {
            (r.max(running), w.max(waiting))
        }));
    };
    let mut i = levels
        .partition_point(|l| l.at < view.start)
        .saturating_sub(1);
    while let Some(level) = levels.get(i) {
        if level.at > view.end {
            break;
        }
        let column = column_of(level.at);
        let column_end = view.t_of((column + 1) as f32, width_px);
        let j = gallop(levels, i + 1, |l| l.at < column_end).max(i + 1);
        raise(&mut peak[column], blocks.peak(levels, i..j));
        // The last of them holds until the next level (or the end).
        let last = &levels[j - 1];
        let until = column_of(levels.get(j).map_or(end, |n| n.at));
        for slot in peak.iter_mut().take(until + 1).skip(column + 1) {
            raise(slot, (last.running, last.waiting));
        }
        i = j;
    }
    peak
}

/// Axis ticks: (time in seconds, label), at a 1-2-5 step at least `min_px` apart.
pub fn ticks(view: TimeView, width_px: f32, min_px: f32) -> Vec<(f64, String)> {
    let min_step = view.span() * f64::from(min_px) / f64::from(width_px.max(1.0));
    let mut step = 1e-6;
    'search: for exp in -6..=6 {
        for m in [1.0, 2.0, 5.0] {
            let s = m * 10f64.powi(exp);
            if s >= min_step {
                step = s;
                break 'search;
            }
        }
        step = 10f64.powi(exp + 1);
    }
    // Past a minute, steps of whole minutes and hours read better.
    for s in [
        60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 18000.0, 36000.0,
    ] {
        if step > 30.0 && s >= min_step {
            step = s;
            break;
        }
    }
    let first = (view.start / step).ceil() as i64;
    let last = (view.end / step).floor() as i64;
    (first..=last)
        .take(1000)
        .map(|i| {
            let t = i as f64 * step;
            (t, time_label(t, step))
        })
        .collect()
}

/// `250 µs`, `1.5 ms`, `2 s`, `1:30`, `1:02:00`, with the precision the step needs.
pub fn time_label(t: f64, step: f64) -> String {
    let sign = if t < 0.0 { "-" } else { "" };
    let a = t.abs();
    if step < 1e-3 {
        format!("{sign}{:.0} µs", a * 1e6)
    } else if step < 1.0 {
        let decimals = usize::from(step < 1e-2);
        if a < 1.0 {
            format!("{sign}{:.*} ms", decimals, a * 1e3)
        } else {
            format!("{sign}{:.*} s", (-step.log10()).ceil() as usize, a)
        }
    } else if step < 60.0 && a < 60.0 {
        format!("{sign}{a:.0} s")
    } else if a < 3600.0 {
        format!("{sign}{}:{:02}", (a / 60.0) as u64, (a % 60.0) as u64)
    } else {
        format!(
            "{sign}{}:{:02}:{:02}",
            (a / 3600.0) as u64,
            ((a % 3600.0) / 60.0) as u64,
            (a % 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Event, EventKind, TaskSpec};
    use std::sync::Arc;
    use std::time::SystemTime;

    #[test]
    fn a_span_costs_48_bytes_and_a_lane_no_more_than_its_spans_and_sums() {
        // A million tasks in the window: 56 bytes each in the lanes, not 72.
        assert_eq!(std::mem::size_of::<Span>(), 48);
        assert!(command_hash(&crate::executor::Invocation::Shell("echo a".into())) <= 0xffff_ffff);
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// A record built from events: (slot, pid, start ms, end ms) per task.
    fn record(runs: &[(usize, u32, u64, u64)]) -> RunRecord {
        let here: Vec<_> = runs.iter().map(|&(s, p, a, b)| ("", s, p, a, b)).collect();
        record_on_hosts(&here)
    }

    /// Like [`record`], with the host each task ran on first ("": this machine).
    fn record_on_hosts(runs: &[(&str, usize, u32, u64, u64)]) -> RunRecord {
        let mut r = RunRecord::default();
        let mut apply = |at: Duration, kind| r.apply(&Event { at, kind });
        apply(
            Duration::ZERO,
            EventKind::PoolStarted {
                wall_clock: SystemTime::now(),
                size: 2,
            },
        );
        for (i, &(host, slot, pid, start, end)) in runs.iter().enumerate() {
            let task = TaskId(i as u64 + 1);
            apply(
                Duration::ZERO,
                EventKind::Queued {
                    task,
                    spec: Arc::new(TaskSpec::shell(format!("job {i}"))),
                },
            );
            apply(
                ms(start),
                EventKind::Started {
                    task,
                    attempt: 1,
                    slot,
                    pid: Some(pid),
                    host: Some(host.to_owned()).filter(|h| !h.is_empty()),
                },
            );
            apply(
                ms(end),
                EventKind::Finished {
                    task,
                    attempt: 1,
                    outcome: Outcome::Exited(0),
                    stdin_bytes: 0,
                    will_retry: false,
                },
            );
        }
        r
    }

    #[test]
    fn lanes_by_slot_never_overlap() {
        let r = record(&[
            (0, 10, 0, 100),
            (1, 11, 0, 300),
            (0, 12, 100, 250),
            (0, 13, 250, 400),
            (1, 14, 300, 320),
        ]);
        let view = TimeView {
            start: 0.0,
            end: 0.4,
        };
        let l = layout(&r, ms(400), LaneMode::Slot, view, 4000.0, 0..10);
        assert_eq!(l.lane_count, 2);
        assert_eq!(
            l.lane_labels,
            [(0, "slot 0".to_owned()), (1, "slot 1".to_owned())]
        );
        for lane in 0..2 {
            let mut bars: Vec<&Bar> = l.bars.iter().filter(|b| b.lane == lane).collect();
            bars.sort_by(|a, b| a.x0.total_cmp(&b.x0));
            for pair in bars.windows(2) {
                assert!(
                    pair[0].x1 <= pair[1].x0 + 0.01,
                    "overlap in lane {lane}: {pair:?}"
                );
            }
        }
        assert_eq!(l.bars.len(), 5);
    }

    #[test]
    fn a_live_bar_is_updated_in_place_when_its_task_is_done_and_kept_compact() {
        // A start with nanoseconds: a done task's row keeps whole microseconds, and the
        // bar must still be found by its start (it was drawn twice, and every frame
        // rebuilt the index).
        let mut r = RunRecord::default();
        let mut apply = |at: Duration, kind| r.apply(&Event { at, kind });
        apply(
            Duration::ZERO,
            EventKind::PoolStarted {
                wall_clock: SystemTime::now(),
                size: 1,
            },
        );
        let task = TaskId(1);
        let spec = Arc::new(TaskSpec::shell("job"));
        apply(Duration::ZERO, EventKind::Queued { task, spec });
        let started = EventKind::Started {
            task,
            attempt: 1,
            slot: 0,
            pid: Some(7),
            host: None,
        };
        apply(Duration::from_nanos(548_282_605), started);
        let mut index = LaneIndex::default();
        index.update(&r, LaneMode::Slot);
        let finished = EventKind::Finished {
            task,
            attempt: 1,
            outcome: Outcome::Exited(0),
            stdin_bytes: 0,
            will_retry: false,
        };
        r.apply(&Event {
            at: Duration::from_nanos(548_286_999),
            kind: finished,
        });
        index.update(&r, LaneMode::Slot);
        assert_eq!(index.lanes[0].spans.len(), 1, "one bar for the task");
        assert!(index.lanes[0].spans[0].end.is_finite(), "its end is drawn");
        assert!(index.live.is_some(), "no rebuild is due");
    }

    #[test]
    fn two_thousand_short_lived_pids_share_as_many_lanes_as_ran_at_once() {
        // A process per task at pool 2: 2000 PIDs, never more than 2 alive.
        let runs: Vec<(usize, u32, u64, u64)> = (0..2000u32)
            .map(|i| {
                let start = u64::from(i / 2) * 10;
                ((i % 2) as usize, 10_000 + i, start, start + 10)
            })
            .collect();
        let r = record(&runs);
        let l = layout(
            &r,
            ms(10_000),
            LaneMode::Pid,
            TimeView::fit(10.0),
            1000.0,
            0..10,
        );
        assert_eq!(l.lane_count, 2, "lanes for what ran at once, not per PID");
        assert_eq!(
            l.lane_labels,
            [
                (0, "PID 10000 +999".to_owned()),
                (1, "PID 10001 +999".to_owned())
            ]
        );
        assert!(!l.bars.is_empty(), "the visible chart shows the runs");
    }

    #[test]
    fn lanes_by_pid_put_a_reused_worker_on_one_lane() {
        // Python Pool(2) style: two PIDs run four tasks.
        let r = record(&[
            (0, 100, 0, 100),
            (1, 200, 0, 100),
            (0, 100, 100, 200),
            (1, 200, 100, 200),
        ]);
        let l = layout(
            &r,
            ms(200),
            LaneMode::Pid,
            TimeView::fit(0.2),
            1000.0,
            0..10,
        );
        assert_eq!(
            l.lane_labels,
            [(0, "PID 100".to_owned()), (1, "PID 200".to_owned())]
        );
        assert_eq!(l.bars.iter().filter(|b| b.lane == 0).count(), 2);
        assert_eq!(l.bars.iter().filter(|b| b.lane == 1).count(), 2);
    }

    #[test]
    fn lanes_by_host_group_each_nodes_slots() {
        // A cluster packs lanes across nodes: node-b has slots 0 and 2, node-a slot 1.
        let r = record_on_hosts(&[
            ("node-b", 0, 100, 0, 100),
            ("node-a", 1, 200, 0, 100),
            ("node-b", 2, 300, 0, 100),
            ("node-b", 0, 400, 100, 200),
            ("compute-node-042", 1, 500, 100, 200),
        ]);
        let l = layout(
            &r,
            ms(200),
            LaneMode::Host,
            TimeView::fit(0.2),
            1000.0,
            0..10,
        );
        let labels: Vec<&str> = l.lane_labels.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            labels,
            ["comp…e-042 · 1", "node-a · 1", "node-b · 0", "node-b · 2"]
        );
        let lane_of = |task: u64| {
            l.bars
                .iter()
                .find(|b| b.task == TaskId(task))
                .map(|b| b.lane)
        };
        assert_eq!(lane_of(1), Some(2));
        assert_eq!(lane_of(4), Some(2), "same node, same slot: same lane");
        assert_eq!(lane_of(2), Some(1));
        assert_eq!(lane_of(3), Some(3));
        assert_eq!(lane_of(5), Some(0));
    }

    #[test]
    fn lanes_by_host_name_this_machine_local() {
        let r = record(&[(0, 100, 0, 100), (1, 200, 0, 100)]);
        let l = layout(
            &r,
            ms(100),
            LaneMode::Host,
            TimeView::fit(0.1),
            1000.0,
            0..10,
        );
        assert_eq!(
            l.lane_labels,
            [(0, "local · 0".to_owned()), (1, "local · 1".to_owned())]
        );
    }

    #[test]
    fn culling_returns_only_bars_in_view() {
        let r = record(&[(0, 1, 0, 100), (0, 2, 1000, 1100), (0, 3, 2000, 2100)]);
        let view = TimeView {
            start: 0.9,
            end: 1.2,
        };
        let l = layout(&r, ms(2100), LaneMode::Slot, view, 1000.0, 0..10);
        assert_eq!(l.bars.len(), 1);
        assert_eq!(l.bars[0].task, TaskId(2));
        let hidden_lane = layout(
            &r,
            ms(2100),
            LaneMode::Task,
            TimeView::fit(2.1),
            1000.0,
            1..2,
        );
        assert!(
            hidden_lane.bars.iter().all(|b| b.lane == 1),
            "rows off screen are not laid out"
        );
    }

    #[test]
    fn tiny_bars_get_a_minimum_width_and_neighbours_merge() {
        let runs: Vec<(usize, u32, u64, u64)> =
            (0..1000).map(|i| (0, i as u32 + 1, i, i + 1)).collect();
        let r = record(&runs);
        let l = layout(
            &r,
            ms(1000),
            LaneMode::Slot,
            TimeView {
                start: 0.0,
                end: 1.0,
            },
            100.0,
            0..10,
        );
        assert!(
            l.bars.len() < 100,
            "1000 sub-pixel bars merge into few: {}",
            l.bars.len()
        );
        assert!(l.bars.iter().all(|b| b.x1 - b.x0 >= MIN_BAR_PX - 1e-3));
        let total: u32 = l.bars.iter().map(|b| b.merged + 1).sum();
        assert_eq!(total, 1000, "nothing lost in merging");
    }

    #[test]
    fn zoom_about_a_point_keeps_that_point_fixed() {
        let mut view = TimeView {
            start: 0.0,
            end: 10.0,
        };
        let width = 800.0;
        let x = 200.0;
        let anchor = view.t_of(x, width);
        view.zoom_about(0.5, anchor);
        assert!((view.x_of(anchor, width) - x).abs() < 1e-3);
        assert!((view.span() - 5.0).abs() < 1e-9);
        view.zoom_about(1e-12, anchor);
        assert!(
            view.span() >= TimeView::MIN_SPAN * 0.999,
            "zoom stops at a microsecond"
        );
    }

    #[test]
    fn task_mode_draws_the_queued_segment() {
        let r = record(&[(0, 1, 500, 600)]);
        let l = layout(
            &r,
            ms(600),
            LaneMode::Task,
            TimeView {
                start: 0.0,
                end: 1.0,
            },
            1000.0,
            0..10,
        );
        let queued = l
            .bars
            .iter()
            .find(|b| b.kind == BarKind::Queued)
            .expect("queued segment");
        assert!((queued.x1 - 500.0).abs() < 0.5);
        assert_eq!(l.bar_at(0, 550.0).map(|b| b.kind), Some(BarKind::Run));
    }

    #[test]
    fn the_strip_keeps_each_columns_peak() {
        use crate::model::record::stats::Level;
        let levels = [
            Level {
                at: 0.0,
                running: 1,
                waiting: 3,
            },
            Level {
                at: 0.001,
                running: 4,
                waiting: 0,
            },
            Level {
                at: 0.002,
                running: 2,
                waiting: 0,
            },
        ];
        let mut blocks = LevelBlocks::default();
        blocks.update(1, &levels);
        let cols = strip_columns(
            &levels,
            &blocks,
            TimeView {
                start: 0.0,
                end: 1.0,
            },
            10.0,
            10,
            1.0,
        );
        assert_eq!(
            cols[0],
            Some((4, 3)),
            "a 1 ms spike is not lost at 100 ms per column"
        );
        assert_eq!(cols[9], Some((2, 0)));
    }

    #[test]
    fn ticks_are_readable_from_microseconds_to_hours() {
        for (span, expect) in [
            (2e-5, "µs"),
            (0.02, "ms"),
            (20.0, " s"),
            (3000.0, ":"),
            (40000.0, ":"),
        ] {
            let t = ticks(
                TimeView {
                    start: 0.0,
                    end: span,
                },
                1000.0,
                80.0,
            );
            assert!(
                (3..=13).contains(&t.len()),
                "span {span}: {} ticks",
                t.len()
            );
            assert!(
                t.iter().skip(1).all(|(_, l)| l.contains(expect)),
                "span {span}: {t:?}"
            );
        }
    }
}
