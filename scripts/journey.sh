#!/usr/bin/env bash
# A new user's journey through the real window, with real clicks and keys (xdotool) on
# an X display that is already up ($DISPLAY), no window manager, at 1280x800:
#  1. the Pool demo (preloaded) runs; the splitters are dragged to each end; two tasks
#     are bulk-added from a template over typed inputs; a task is added to the open pool
#     from another terminal (`poolscope add`);
#  2. a file is opened through File › Open a typed path… (a window of its own);
#  3. an nslookup session (a local dnsmasq answers) gets three lines typed quickly;
#  4. a Python program is watched through File › Watch a Python program…;
#  5. a run at pool 2 is killed with SIGKILL; the next window offers it, Resume is
#     clicked, and it finishes at its own pool size.
# After each step the task list shows at least 5 rows and the console at least 6 lines;
# what is checked is read from the window's own state dump (--state-dump), and a
# screenshot of each step is saved in $out (journey-*.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${POOLSCOPE_BIN:-target/debug/poolscope}
out=${SMOKE_OUT:-target/smoke}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dump="$out/journey.json"
rm -rf "$out/xdg-journey" "$out"/journey-*.png "$dump"
export XDG_DATA_HOME="$out/xdg-journey" XDG_CONFIG_HOME="$out/xdg-journey"
fail() { echo "journey: FAIL: $*" >&2; [ -s "$dump" ] && cat "$dump" >&2; exit 1; }

# q EXPR: a Python expression over the dump `d` (None when a key is missing).
q() {
  python3 - "$dump" "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("None"); sys.exit()
def get(*path):
    v = d
    for p in path:
        if v is None: return None
        v = v.get(p) if isinstance(v, dict) else (v[p] if isinstance(v, list) and len(v) > p else None)
    return v
try:
    print(eval(sys.argv[2]))
except Exception:
    print("None")
PY
}
# until WHAT EXPR [SECONDS]: wait for EXPR to be True (polled, bounded).
until_true() {
  local what=$1 expr=$2 secs=${3:-30}
  for _ in $(seq $((secs * 10))); do
    [ "$(q "$expr")" = True ] && return 0
    sleep 0.1
  done
  fail "timed out waiting for $what ($expr)"
}
# click NAME: click the centre of a widget the window named in its dump.
click() {
  until_true "the widget '$1' to show" "get('marks', '$1') is not None" 10
  local xy
  xy=$(q "' '.join(str(int(v)) for v in get('marks', '$1'))")
  # shellcheck disable=SC2086
  xdotool mousemove $xy click 1
}
shot() { # shot NAME: a PNG of the window, written by the window itself
  local png="$out/journey-$1.png"
  rm -f "$png"
  echo "$png" >"${dump%.json}.shot"
  for _ in $(seq 100); do [ -s "$png" ] && break; sleep 0.1; done
  [ -s "$png" ] || fail "no screenshot $png"
  python3 scripts/png_check.py not-blank "$png" || fail "$png is blank"
}
layout_holds() { # after each step: ≥ 5 rows in the list, ≥ 6 lines in the console
  until_true "the list to show 5 rows and the console 6 lines ($1)" \
    "get('list_rows_fit') >= 5 and get('console_lines_fit') >= 6" 10
}
drag_y() { # drag_y X FROM_Y TO_Y: a press, a move in steps, a release
  xdotool mousemove "$1" "$2" sleep 0.2 mousedown 1 sleep 0.2
  xdotool mousemove "$1" $(( ($2 + $3) / 2 )) sleep 0.2 mousemove "$1" "$3" sleep 0.3 mouseup 1
  sleep 0.5
}
start_window() { # start_window ARGS...: the window, focused, its dump written
  rm -f "$dump"
  "$bin" --state-dump "$dump" "$@" >>"$out/journey.log" 2>&1 &
  window=$!
  until_true "the window to open" "get('marks', 'file-menu') is not None" 30
  local id
  for _ in $(seq 50); do id=$(xdotool search --name '^poolscope' 2>/dev/null | head -1) && [ -n "$id" ] && break; sleep 0.1; done
  # No window manager: the keyboard goes where the focus is put.
  xdotool windowfocus "$id"
}
dns_pid=
cleanup() {
  [ -n "${window:-}" ] && kill "$window" 2>/dev/null || true
  [ -n "$dns_pid" ] && kill "$dns_pid" 2>/dev/null || true
}
trap cleanup EXIT

echo "-- 1. the Pool demo, then the splitters dragged to each end"
start_window
[ "$(q "get('rows')")" = 5 ] || fail "the Pool demo is not preloaded"
# The desktop entry finds its window by class, and the window carries its icon.
xprop -id "$(xdotool search --name '^poolscope' | head -1)" WM_CLASS | grep -q '"poolscope"' \
  || fail "the window's class is not poolscope"
xprop -id "$(xdotool search --name '^poolscope' | head -1)" -notype 32c _NET_WM_ICON \
  | grep -q '= 256, 256' || fail "the window has no 256x256 icon"
click start
until_true "the demo's 5 tasks" "get('run', 'succeeded') == 5" 30
layout_holds "after the demo"
y=$(q "int(get('timeline')[3]) + 2")
drag_y 640 "$y" 790
layout_holds "the timeline's splitter dragged to the bottom"
y=$(q "int(get('console')[1]) - 3")
drag_y 640 "$y" 60
layout_holds "the console's splitter dragged to the top"
shot splitters
y=$(q "int(get('console')[1]) - 3")
drag_y 640 "$y" 790
layout_holds "the console's splitter dragged to the bottom"

echo "-- 1b. bulk add: a template over typed inputs, previewed, then added"
click bulk-add-open
until_true "the bulk-add window" "get('marks', 'bulk-command') is not None" 10
click bulk-command
xdotool key ctrl+a BackSpace
xdotool type --delay 5 'echo {/.} from {//}'
click bulk-inputs
xdotool type --delay 5 'photos/a.png'
xdotool key Return
xdotool type --delay 5 'photos/b c.png'
sleep 0.5
until_true "the preview of both commands" "get('marks', 'bulk-preview') is not None" 10
shot bulk-add
click bulk-add
until_true "both tasks in the list" \
  "get('rows') == 7 and get('last_row_command') == \"echo 'b c' from photos\" and get('dialog') is None" 10
layout_holds "after the bulk add"

echo "-- 1c. a task added from another terminal joins the window's open pool"
"$bin" ls | grep -q window || fail "poolscope ls does not list the window's run"
added=$("$bin" add --name 'from a terminal' -- 'echo added from a terminal') \
  || fail "poolscope add to the window failed"
[ "$added" = 6 ] || fail "the added task is number $added, not 6"
until_true "the added task's row, run" \
  "get('rows') == 8 and get('run', 'succeeded') == 6 and get('last_row_command') == \"echo 'b c' from photos\"" 10
"$bin" log 6 | grep -qx 'added from a terminal' || fail "poolscope log 6 does not show its output"
layout_holds "after a task added from a terminal"
shot terminal-add

echo "-- 2. a file opened through a typed path"
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dnsmasq --no-daemon --port="$port" --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
  --no-hosts --conf-file=/dev/null --mx-host=example.test,mail.example.test,50 \
  >"$out/dnsmasq.log" 2>&1 &
dns_pid=$!
cat >"$out/journey-dns.toml" <<TOML
[pool]
size = 1
[[task]]
name = "nslookup"
program = "nslookup"
args = ["-port=$port", "-", "127.0.0.1"]
pty = true
stdin = "pipe"
TOML
click file-menu
click open-typed-path
until_true "the typed-path window" "get('marks', 'path-field') is not None" 10
click path-field
sleep 0.3
[ "$(q "get('dialog')")" != None ] || fail "a click in the path field closed its window"
xdotool key ctrl+a BackSpace
xdotool type --delay 5 "$out/journey-dns.toml"
# A person looks at a path before pressing Enter (and X's input method may deliver the
# last letters after a key pressed at once).
sleep 0.5
xdotool key Return
until_true "the file to open" "get('file') == '$out/journey-dns.toml' and get('rows') == 1" 10

echo "-- 3. nslookup: three lines typed quickly"
click start
until_true "nslookup to run" "get('selected', 'state') == 'running'" 20
click input
sleep 0.3
for line in "set q=mx" "example.test" "acme.internal"; do
  xdotool type --delay 3 "$line"
  xdotool key Return
done
until_true "every typed line to reach nslookup" \
  "'example.test\tmail exchanger = 50 mail.example.test.' in get('selected', 'output') and any(\"can't find acme.internal\" in l for l in get('selected', 'output'))" 20
until_true "the box to keep the focus" "get('input_focused') is True and get('input') == ''" 5
layout_holds "the nslookup session"
shot nslookup
click input
xdotool type --delay 3 "exit"
xdotool key Return
until_true "nslookup to exit" "get('selected', 'state') in ('done', 'failed')" 20

echo "-- 4. a Python program watched"
cat >"$out/journey-pool.py" <<'PY'
from multiprocessing import Pool
import time
def work(x):
    time.sleep(0.05)
    return x * x
if __name__ == "__main__":
    with Pool(3) as pool:
        print("sum of squares:", sum(pool.map(work, range(12))))
PY
click file-menu
click watch-program
until_true "the watch window" "get('marks', 'watch-field') is not None" 10
click watch-field
xdotool key ctrl+a BackSpace
xdotool type --delay 5 "python3 $out/journey-pool.py"
sleep 0.5
xdotool key Return
until_true "the watched program to end" "get('run', 'live') is False and get('run', 'tasks') == 13" 60
until_true "the program's own output in its console" \
  "'sum of squares: 506' in get('selected', 'output')" 10
layout_holds "the watched program"
shot watched

echo "-- 5. SIGKILL of a run at pool 2, then Resume"
cat >"$out/journey-cut.toml" <<TOML
[pool]
size = 2
[[task]]
name = "cut {}"
command = 'test -e $out/journey-resumed || exec sleep 100'
range = [0, 20]
TOML
click file-menu
click open-typed-path
until_true "the typed-path window" "get('marks', 'path-field') is not None" 10
xdotool key ctrl+a BackSpace
xdotool type --delay 5 "$out/journey-cut.toml"
sleep 0.5
xdotool key Return
until_true "the list of 20" "get('rows') == 20 and get('pool_size') == 2" 10
rm -f "$out/journey-resumed"
click start
until_true "two tasks running" "get('run', 'running') == 2" 20
kill -KILL "$window"
wait "$window" 2>/dev/null || true
touch "$out/journey-resumed"
start_window
until_true "the list the user had to come back" \
  "get('rows') == 20 and get('file') == '$out/journey-cut.toml'" 10
until_true "the run to be offered" "(get('dialog') or '').startswith('Recover')" 10
click recover-resume
until_true "the resumed run to finish" "get('run', 'succeeded') == 20" 60
[ "$(q "get('run', 'largest_pool_size')")" = 2 ] \
  || fail "the resumed run's pool size is $(q "get('run', 'largest_pool_size')"), not 2"
[ "$(q "get('run', 'slots_used') <= 2")" = True ] || fail "the resumed run used slots past its pool of 2"
[ "$(q "get('pool_size')")" = 2 ] || fail "the controls show $(q "get('pool_size')"), not the run's 2"
layout_holds "the resumed run"
shot resumed
echo "journey: 5 steps passed"
