#!/usr/bin/env bash
# The real binary in a real (virtual) X display:
#  1. runs the seed's Pool(4) preset to completion, saves a screenshot, exits 0;
#  2. quits while tasks run (screenshot mid-run) and leaves no task process behind;
#  3. gets SIGTERM while tasks run and leaves no task process behind;
#  4. is SIGKILLed while tasks run: no task is left (the orphan guard ends them), and
#     the run, cut short, is finished by `poolscope run --resume RUN_DIR`;
#  5. "Copy all" puts the console's text on the X clipboard (clicked with xdotool at the
#     default 1280x800 layout, read back with xclip);
#  6. a task's ANSI red text is drawn red (pixels of the screenshot), plain text is not;
#  7. a new user's journey, clicked and typed (scripts/journey.sh): splitters dragged,
#     a typed path, nslookup typed to quickly, a watched program, SIGKILL and Resume;
#  and after step 1, the saved window state is private (app.ron 0600 in a 0700 folder).
# Needs Xvfb (package xvfb); `scripts/test.sh` installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${POOLSCOPE_BIN:-target/debug/poolscope}
out=${SMOKE_OUT:-target/smoke}
mkdir -p "$out"
rm -f "$out"/*.png "$out"/pid.*
# A private settings folder: the smoke run must not restore or overwrite a user's list.
export XDG_DATA_HOME="$PWD/$out/xdg" XDG_CONFIG_HOME="$PWD/$out/xdg"
fail() { echo "gui smoke: FAIL: $*" >&2; exit 1; }
# One X server for every step, on a display it picks itself once it is ready
# (-displayfd): a step never races another xvfb-run's server that is still shutting down.
rm -f "$out/display"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$out/display" 2>"$out/xvfb.log" &
xvfb_pid=$!
trap 'kill $xvfb_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$out/display" ] && break; sleep 0.1; done
[ -s "$out/display" ] || fail "Xvfb did not start: $(cat "$out/xvfb.log")"
export DISPLAY=":$(head -1 "$out/display")"
xvfb() { "$@"; }

png_is_not_blank() { python3 scripts/png_check.py not-blank "$1"; }

leftovers() { # task processes still alive, by the pids the tasks wrote
  local alive=0
  for f in "$out"/pid.*; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if [ -e "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      echo "task process $pid is still running" >&2; alive=1
    fi
  done
  return $alive
}

echo "== 1. Pool(4) preset to completion, screenshot, exit 0"
xvfb "$bin" assets/presets/pool4.toml --autostart --exit-when-done --screenshot "$out/pool-done.png" \
  || fail "exit status $?"
[ -s "$out/pool-done.png" ] || fail "no screenshot"
png_is_not_blank "$out/pool-done.png" || fail "the screenshot is blank"
# The saved state holds the tasks' environments: private to the user.
state_mode=$(stat -c %a "$XDG_DATA_HOME/poolscope/app.ron" 2>/dev/null || echo missing)
[ "$state_mode" = 600 ] || fail "app.ron is $state_mode, not 600"
[ "$(stat -c %a "$XDG_DATA_HOME/poolscope")" = 700 ] || fail "the state folder is not 700"

echo "== 2. quit while tasks run"
cat >"$out/long.toml" <<TOML
[pool]
size = 3
[[task]]
name = "long {}"
command = 'echo \$\$ > $PWD/$out/pid.{}; exec sleep 100'
range = [0, 5]
TOML
xvfb "$bin" "$out/long.toml" --autostart --screenshot "$out/quit-mid-run.png" --screenshot-after 1.5 \
  || fail "exit status $?"
[ "$(ls "$out"/pid.* | wc -l)" -eq 3 ] || fail "expected 3 running tasks"
leftovers || fail "tasks outlived the window"
rm -f "$out"/pid.*

echo "== 3. SIGTERM while tasks run"
xvfb "$bin" "$out/long.toml" --autostart &
runner=$!
for _ in $(seq 100); do [ "$(ls "$out"/pid.* 2>/dev/null | wc -l)" -eq 3 ] && break; sleep 0.1; done
[ "$(ls "$out"/pid.* 2>/dev/null | wc -l)" -eq 3 ] || fail "tasks never started"
pkill -TERM -x poolscope || fail "poolscope not found"
wait "$runner" || true
leftovers || fail "tasks outlived a SIGTERM to the window"
rm -f "$out"/pid.*

echo "== 4. SIGKILL while tasks run, then resume the run"
cat >"$out/cut.toml" <<TOML
[pool]
size = 3
[[task]]
name = "cut {}"
command = 'echo \$\$ > $PWD/$out/pid.{}; test -e $PWD/$out/resumed || exec sleep 100'
range = [0, 5]
TOML
rm -f "$out/resumed"
runs="$PWD/$out/xdg/poolscope/runs"
before=$(ls "$runs" 2>/dev/null | wc -l)
xvfb "$bin" "$out/cut.toml" --autostart &
for _ in $(seq 100); do [ "$(ls "$out"/pid.* 2>/dev/null | wc -l)" -eq 3 ] && break; sleep 0.1; done
[ "$(ls "$out"/pid.* 2>/dev/null | wc -l)" -eq 3 ] || fail "tasks never started"
# The window records what it has seen: wait until its journal has the three starts.
for _ in $(seq 100); do
  run=$(ls -d "$runs"/run-* 2>/dev/null | tail -1)
  [ -n "$run" ] && [ "$(grep -c -e '"Started"' -e '^\["s",' "$run/journal.jsonl" 2>/dev/null)" -ge 3 ] && break
  sleep 0.1
done
# The oldest: the window, not its orphan guard (which shares its command line).
window=$(pgrep -o -f "^$bin $out/cut.toml")
[ -n "$window" ] || fail "the window's process not found"
kill -KILL "$window"
# The guard ends them within its grace (1 s): polled, at most 10 s.
for _ in $(seq 100); do leftovers 2>/dev/null && break; sleep 0.1; done
leftovers || fail "tasks outlived a SIGKILL of the window"
run=$(ls -d "$runs"/run-* | tail -1)
[ "$(ls "$runs" | wc -l)" -gt "$before" ] || fail "the window kept no run folder"
touch "$out/resumed"
"$bin" run --resume "$run" >"$out/resume.out" 2>"$out/resume.err" \
  || fail "resume failed: $(cat "$out/resume.err")"
grep -q "5 of 5 tasks to run (3 were lost" "$out/resume.err" \
  || fail "resume ran something else: $(cat "$out/resume.err")"

echo "== 5. Copy all reaches the X clipboard"
cat >"$out/clip.toml" <<'TOML'
[pool]
size = 1
[[task]]
command = "echo hello clipboard"
TOML
cat >"$out/clip.sh" <<SH
set -u
# Fresh settings: the click lands where the default layout puts "Copy all", not where an
# earlier step left the panels.
rm -rf "$out/xdg-clip"
export XDG_DATA_HOME="$PWD/$out/xdg-clip" XDG_CONFIG_HOME="$PWD/$out/xdg-clip"
"$bin" "$out/clip.toml" --autostart &
app=\$!
# The first task's console shows once it ran; "Copy all" sits under its header.
for _ in \$(seq 50); do xdotool search --name '^poolscope' >/dev/null 2>&1 && break; sleep 0.2; done
for _ in \$(seq 10); do
  sleep 1
  xdotool mousemove 38 553 click 1
  sleep 0.5
  xclip -o -selection clipboard >"$out/clipboard.txt" 2>/dev/null
  grep -qx "hello clipboard" "$out/clipboard.txt" && break
done
kill \$app
wait \$app 2>/dev/null
exit 0
SH
xvfb bash "$out/clip.sh"
grep -qx "hello clipboard" "$out/clipboard.txt" \
  || fail "the clipboard holds '$(cat "$out/clipboard.txt" 2>/dev/null)', not the console's text"
echo "== 6. ANSI colours: a task's red text is drawn red in its console"
cat >"$out/colour.toml" <<'TOML'
[pool]
size = 1
[[task]]
command = "printf '\\033[31mred text, drawn red\\033[0m and plain\\n'"
TOML
xvfb "$bin" "$out/colour.toml" --autostart --exit-when-done --screenshot "$out/colour.png" \
  || fail "exit status $?"
python3 scripts/png_check.py red "$out/colour.png" || fail "no red text in the console"
cat >"$out/plain.toml" <<'TOML'
[pool]
size = 1
[[task]]
command = "printf 'red text, drawn red and plain\\n'"
TOML
xvfb "$bin" "$out/plain.toml" --autostart --exit-when-done --screenshot "$out/plain.png" \
  || fail "exit status $?"
! python3 scripts/png_check.py red "$out/plain.png" || fail "red found without any colour asked"
echo "== 7. a new user's journey (scripts/journey.sh)"
POOLSCOPE_BIN="$bin" SMOKE_OUT="$out" bash scripts/journey.sh || fail "the journey"
echo "smoke: 7 passed, 0 failed"
