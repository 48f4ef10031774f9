#!/usr/bin/env python3
"""Builds side by side: N x /bin/true through the C loops and each poolscope binary
given, alternating, ROUNDS times, and the medians with their ratios to the loops.
Alternating keeps the machine's swings (10-20% between quarter hours here) out of the
comparison of two builds.

    python3 benches/compare.py ROUNDS JOBS BINARY...   (e.g. two builds' poolscope)
    python3 benches/compare.py --one ROUNDS BINARY...  (one task, start to exit)
    python3 benches/compare.py --startup ROUNDS BINARY (where a one-task run's time goes)

TASKS (default 3000) sets the number of tasks.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time


def scratch():
    """A scratch folder with the C loop built in it, and an environment whose runs go
    there."""
    here = os.path.dirname(os.path.abspath(__file__))
    work = tempfile.mkdtemp()
    loop = os.path.join(work, "spawnpool")
    subprocess.run(
        ["gcc", "-O2", "-o", loop, os.path.join(here, "../../shared/bench/spawnpool.c")],
        check=True,
    )
    env = dict(os.environ, POOLSCOPE_RUN_DIR=os.path.join(work, "runs"))
    return work, loop, env


def alternate(cases, rounds, env, sync):
    """Each case's wall times, the cases run one after the other, ROUNDS times; a case
    is (command, file on its stdin); `sync` first if asked (a run's journal is synced)."""
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (cmd, stdin) in cases.items():
            if sync:
                subprocess.run(["sync"])
            with open(stdin) as f:
                start = time.perf_counter()
                subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                times[name].append(time.perf_counter() - start)
    return times


def startup(rounds, binary):
    """A process, the C loop's one task, and poolscope's parts: its start, a run of no
    task and of one, each without and with its journal."""
    work, loop, env = scratch()
    one = os.path.join(work, "one.txt")
    with open(one, "w") as f:
        f.write("/bin/true\n")
    run = [binary, "run", "-j", "1"]
    cases = {
        "/bin/true": (["/bin/true"], os.devnull),
        "C loop, one task": ([loop, "1", "1", "/bin/true"], os.devnull),
        "poolscope --version": ([binary, "--version"], os.devnull),
        "run, no task, --no-journal": (run + ["--no-journal"], os.devnull),
        "run, one task, --no-journal": (run + ["--no-journal"], one),
        "run, no task": (run + ["--keep-runs", "3"], os.devnull),
        "run, one task": (run + ["--keep-runs", "3"], one),
    }
    times = alternate(cases, rounds, env, sync=False)
    print(f"medians of {rounds} alternating rounds")
    for name, runs in times.items():
        print(f"  {name:32s} {statistics.median(runs) * 1000:6.2f} ms")
    subprocess.run(["rm", "-rf", work])


def main():
    if sys.argv[1:2] == ["--startup"] and len(sys.argv) == 4:
        startup(int(sys.argv[2]), sys.argv[3])
        return
    one = sys.argv[1:2] == ["--one"]
    args = sys.argv[2:] if one else sys.argv[1:]
    if len(args) < (2 if one else 3):
        sys.exit(__doc__)
    rounds = int(args[0])
    jobs = "1" if one else args[1]
    binaries = args[1:] if one else args[2:]
    tasks = "1" if one else os.environ.get("TASKS", "3000")
    work, loop, env = scratch()
    listing = os.path.join(work, "tasks.txt")
    with open(listing, "w") as f:
        f.write("/bin/true\n" * int(tasks))
    cases = {
        "C loop": ([loop, jobs, tasks, "/bin/true"], os.devnull),
        "C loop -c": ([loop, "-c", jobs, tasks, "/bin/true"], os.devnull),
    }
    for i, binary in enumerate(binaries):
        cases[f"{i + 1}: {binary}"] = ([binary, "run", "-j", jobs, "--keep-runs", "3"], listing)
    times = alternate(cases, rounds, env, sync=True)
    loop_s = statistics.median(times["C loop"])
    capturing_s = statistics.median(times["C loop -c"])
    print(f"{tasks} x /bin/true, -j {jobs}, medians of {rounds} alternating rounds")
    for name, runs in times.items():
        m = statistics.median(runs)
        spread = f"[{min(runs) * 1000:.1f}-{max(runs) * 1000:.1f}]"
        if one:
            print(f"  {name:40s} {m * 1000:8.2f} ms {spread}  (+{(m - loop_s) * 1000:.2f} ms over the loop)")
        else:
            # Each round's ratio to the loops run beside it: the machine's drift between
            # rounds cancels out.
            paired = [
                statistics.median(a / b for a, b in zip(times[peer], runs))
                for peer in ("C loop", "C loop -c")
            ]
            print(
                f"  {name:40s} {m * 1000:8.1f} ms {spread}  {loop_s / m:.3f}x the loop  "
                f"{capturing_s / m:.3f}x capturing  (paired {paired[0]:.3f}x / {paired[1]:.3f}x)"
            )
    subprocess.run(["rm", "-rf", work])


main()
