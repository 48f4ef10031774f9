"""poolscope's window into a Python program's pools (loaded by sitecustomize).

Reports, as JSON lines over the Unix socket named in $POOLSCOPE_WATCH, what the
program's multiprocessing.Pool, multiprocessing.Process and
concurrent.futures.ProcessPoolExecutor do: pools, tasks (submitted, started, ended, on
which worker PID), markers (close, join, terminate, start), and each task's prints.
Timestamps are time.monotonic_ns(), poolscope's own clock.

It changes nothing the program can see: tasks still run the same function with the same
arguments and return the same results, prints still reach the real stdout, and if the
socket is gone every report is dropped silently.
"""

import functools
import itertools
import json
import os
import socket
import sys
import threading
import time

_PATH = os.environ.get("POOLSCOPE_WATCH")
_state = {"sock": None, "pid": None, "lock": threading.Lock(), "dead": False, "buf": [],
          "size": 0, "flushed": 0, "ran": [], "task": None}
# Task ids are given in the process that submits (the main one): unique per run.
_ids = itertools.count(1)
_pools = itertools.count(1)
# Reports wait in a buffer at most this long while tasks stream (ns).
_BATCH_NS = 1_000_000


def _reset_after_fork():
    _state.update(sock=None, pid=None, lock=threading.Lock(), buf=[], size=0, flushed=0,
                  ran=[], task=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _flush_locked():
    ran = _state.get("ran")
    if ran:
        # Tasks that ran since the last batch: [task, start, end] each, in one report.
        _state["ran"] = []
        line = '{"kind":"ran","pid":%d,"t":%d,"tasks":%s}\n' % (
            os.getpid(), time.monotonic_ns(), json.dumps(ran))
        _state["buf"].append(line.encode())
    if not _state["buf"] or _state["dead"]:
        return
    data = b"".join(_state["buf"])
    _state["buf"], _state["size"] = [], 0
    _state["flushed"] = time.monotonic_ns()
    try:
        if _state["sock"] is None or _state["pid"] != os.getpid():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(_PATH)
            _state["sock"], _state["pid"] = s, os.getpid()
        _state["sock"].sendall(data)
    except OSError:
        # poolscope went away: the program goes on unobserved.
        _state["dead"] = True


def _flush():
    with _state["lock"]:
        _flush_locked()


def _flusher():
    """Sends what waited in the buffer at most a millisecond after it was queued, so a
    report never waits for the next one (a long task's start shows at once)."""
    while True:
        _state["pending"].wait()
        time.sleep(_BATCH_NS / 1e9)
        with _state["lock"]:
            _state["pending"].clear()
            _flush_locked()


def _ensure_flusher():
    # Threads do not survive fork: each process starts its own.
    if _state.get("flusher_pid") != os.getpid():
        _state["flusher_pid"] = os.getpid()
        _state["pending"] = threading.Event()
        threading.Thread(target=_flusher, name="poolscope-shim", daemon=True).start()


def _send(kind, now=False, **fields):
    """Queue one report; it goes out with the next batch, or at once when `now` (or
    when nothing went out for a while, so a slow task shows live)."""
    if _PATH is None or _state["dead"]:
        return
    t = time.monotonic_ns()
    fields["kind"] = kind
    fields["pid"] = os.getpid()
    fields["t"] = t
    line = (json.dumps(fields, default=repr) + "\n").encode("utf-8", "replace")
    _ensure_flusher()
    with _state["lock"]:
        _state["buf"].append(line)
        _state["size"] += len(line)
        if now or _state["size"] > 65536:
            _flush_locked()
        else:
            _state["pending"].set()


class _FlushingQueue:
    """A pool worker's task queue: what was reported goes out before the worker waits
    for its next task (so nothing is held while it idles, or lost when it is stopped)."""

    def __init__(self, queue):
        self._queue = queue

    def get(self, *args, **kwargs):
        _flush()
        return self._queue.get(*args, **kwargs)

    def put(self, *args, **kwargs):
        # Reports go out before the result: once the program has every result it may
        # terminate the pool, and this worker with it.
        _flush()
        return self._queue.put(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._queue, name)


def _short(value, limit=60):
    try:
        text = repr(value)
    except Exception:  # a repr that raises must not break the program
        text = "<?>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(func):
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or _short(func)


class _Tee:
    """A worker's stdout or stderr, installed once: writes pass through, and while a task
    runs they are also reported as its output."""

    def __init__(self, real, stream):
        self._real, self._stream = real, stream

    def write(self, text):
        n = self._real.write(text)
        task = _state.get("task")
        if text and task is not None:
            _send("output", task=task, stream=self._stream, text=text)
        return n

    def flush(self):
        self._real.flush()

    def __getattr__(self, name):
        return getattr(self._real, name)


def _quick(line):
    """Queue a report already formatted (the per-task ones: no json.dumps per task)."""
    if _PATH is None or _state["dead"]:
        return
    _ensure_flusher()
    data = line.encode()
    with _state["lock"]:
        _state["buf"].append(data)
        _state["size"] += len(data)
        if _state["size"] > 65536:
            _flush_locked()
        else:
            _state["pending"].set()


def _run(task, func, args, kwargs):
    pid = _state.get("my_pid")
    if pid != os.getpid():
        pid = _state["my_pid"] = os.getpid()
    if sys.stdout.__class__ is not _Tee:
        sys.stdout, sys.stderr = _Tee(sys.stdout, "stdout"), _Tee(sys.stderr, "stderr")
    start = time.monotonic_ns()
    # A task after a pause may be long: show its start at once. Tasks in a quick stream
    # are reported together when they are done ("ran"), a few per report.
    if start - _state["flushed"] > _BATCH_NS:
        _quick('{"kind":"start","pid":%d,"t":%d,"task":%d}\n' % (pid, start, task))
    _state["task"] = task
    try:
        result = func(*args, **kwargs)
    except BaseException as e:
        _state["task"] = None
        _send("start", task=task, t0=start)
        _send("end", task=task, ok=False, error="%s: %s" % (type(e).__name__, e))
        raise
    _state["task"] = None
    with _state["lock"]:
        ran = _state["ran"]
        ran.append((task, start, time.monotonic_ns()))
        if len(ran) >= 4096:
            _flush_locked()
    if len(ran) == 1:
        # The first of a batch wakes the flusher; the rest ride along.
        _ensure_flusher()
        _state["pending"].set()
    return result


class _Task:
    """The submitted callable, wrapped: picklable (a module-level class of an importable
    module), so it works with the fork, spawn and forkserver start methods."""

    def __init__(self, func, task):
        self.func, self.task = func, task

    def __call__(self, *args, **kwargs):
        return _run(self.task, self.func, args, kwargs)


class _MapTask:
    """A map's function: each item arrives with its index, which names its task."""

    def __init__(self, func, first, star=False):
        self.func, self.first, self.star = func, first, star

    def __call__(self, item):
        index, value = item
        args = tuple(value) if self.star else (value,)
        return _run(self.first + index, self.func, args, {})


def _submit(pool, func, args, chunk=None):
    task = next(_ids)
    _send("submit", task=task, pool=pool, func=_name(func), args=_short(args), chunk=chunk)
    return task


def _patch_pool():
    from multiprocessing import pool as mp_pool

    Pool = mp_pool.Pool
    original = {name: getattr(Pool, name) for name in (
        "__init__", "apply_async", "_map_async", "imap", "imap_unordered", "close", "join",
        "terminate",
    )}

    @functools.wraps(original["__init__"])
    def __init__(self, *args, **kwargs):
        self._poolscope_id = next(_pools)
        original["__init__"](self, *args, **kwargs)
        method = getattr(getattr(self, "_ctx", None), "get_start_method", lambda: None)()
        _send("pool", now=True, pool=self._poolscope_id, size=self._processes, method=method,
              workers=[p.pid for p in getattr(self, "_pool", [])])

    @functools.wraps(original["apply_async"])
    def apply_async(self, func, args=(), kwds={}, *rest, **more):
        task = _submit(getattr(self, "_poolscope_id", 0), func, args)
        return original["apply_async"](self, _Task(func, task), args, kwds, *rest, **more)

    def _items(self, func, iterable, star, chunksize=None):
        items = list(iterable)
        pool = getattr(self, "_poolscope_id", 0)
        if chunksize is None:
            # Pool.map's own default (imap's is 1).
            chunksize, extra = divmod(len(items), len(getattr(self, "_pool", [])) * 4 or 1)
            chunksize += 1 if extra else 0
        first = next(_ids)
        # The rest of the ids of this map: one report for all its tasks.
        for _ in range(len(items) - 1):
            next(_ids)
        try:
            # One short repr per item, at C speed (a map may have 100 000 items).
            described = [repr(tuple(v) if star else (v,))[:24] for v in items]
        except Exception:  # a repr that raises must not break the program
            described = [_short(v if star else (v,), 24) for v in items]
        _send("map", pool=pool, first=first, func=_name(func), chunksize=chunksize,
              args=described)
        return _MapTask(func, first, star), list(enumerate(items))

    @functools.wraps(original["_map_async"])
    def _map_async(self, func, iterable, mapper, chunksize=None, *rest, **more):
        star = mapper is mp_pool.starmapstar
        wrapped, items = _items(self, func, iterable, star, chunksize)
        # The wrapper takes one (index, value) item: star-mapping is done inside it.
        return original["_map_async"](self, wrapped, items, mp_pool.mapstar, chunksize,
                                      *rest, **more)

    def _imap(name):
        @functools.wraps(original[name])
        def imap(self, func, iterable, chunksize=1):
            wrapped, items = _items(self, func, iterable, False, chunksize or 1)
            return original[name](self, wrapped, items, chunksize)
        return imap

    def _marker(name):
        @functools.wraps(original[name])
        def call(self, *args, **kwargs):
            pool = getattr(self, "_poolscope_id", 0)
            if name == "join":
                _send("marker", now=True, pool=pool, label="join() entered")
                result = original[name](self, *args, **kwargs)
                _send("marker", now=True, pool=pool, label="join() returned")
                return result
            _send("marker", now=True, pool=pool, label=name + "()")
            return original[name](self, *args, **kwargs)
        return call

    worker = mp_pool.worker

    @functools.wraps(worker)
    def _worker(inqueue, outqueue, *args, **kwargs):
        return worker(_FlushingQueue(inqueue), _FlushingQueue(outqueue), *args, **kwargs)

    _worker.__module__, _worker.__qualname__ = __name__, "_pool_worker"
    globals()["_pool_worker"] = _worker
    mp_pool.worker = _worker

    Pool.__init__ = __init__
    Pool.apply_async = apply_async
    Pool._map_async = _map_async
    Pool.imap = _imap("imap")
    Pool.imap_unordered = _imap("imap_unordered")
    for name in ("close", "join", "terminate"):
        setattr(Pool, name, _marker(name))


def _patch_process():
    from multiprocessing import process as mp_process

    Base = mp_process.BaseProcess
    start, join = Base.start, Base.join

    # Pools' own workers are Processes too: only the program's own are reported.
    pool_workers = {"worker", "_pool_worker", "_process_worker", "_futures_worker"}

    def is_pool_worker(process):
        target = getattr(process, "_target", None)
        return getattr(target, "__qualname__", None) in pool_workers and getattr(
            target, "__module__", ""
        ).startswith(("multiprocessing", "concurrent", __name__))

    @functools.wraps(start)
    def patched_start(self):
        if is_pool_worker(self):
            self._poolscope_worker = True
            return start(self)
        # start() forgets the target in the parent: name it first.
        target = _name(getattr(self, "_target", None))
        result = start(self)
        _send("process", now=True, child=self.pid, target=target, label="start()")
        return result

    @functools.wraps(join)
    def patched_join(self, timeout=None):
        if getattr(self, "_poolscope_worker", False):
            return join(self, timeout)
        result = join(self, timeout)
        _send("process", now=True, child=self.pid, exitcode=self.exitcode, label="join()")
        return result

    Base.start = patched_start
    Base.join = patched_join


def _patch_futures():
    try:
        from concurrent.futures import process as cf_process
    except ImportError:
        return
    Executor = cf_process.ProcessPoolExecutor
    init, submit = Executor.__init__, Executor.submit

    @functools.wraps(init)
    def patched_init(self, *args, **kwargs):
        self._poolscope_id = next(_pools)
        init(self, *args, **kwargs)
        _send("pool", now=True, pool=self._poolscope_id, size=self._max_workers, method=None, workers=[])

    @functools.wraps(submit)
    def patched_submit(self, fn, /, *args, **kwargs):
        task = _submit(getattr(self, "_poolscope_id", 0), fn, args)
        return submit(self, _Task(fn, task), *args, **kwargs)

    process_worker = cf_process._process_worker

    @functools.wraps(process_worker)
    def _futures_worker(call_queue, result_queue, *args, **kwargs):
        return process_worker(
            _FlushingQueue(call_queue), _FlushingQueue(result_queue), *args, **kwargs
        )

    _futures_worker.__module__, _futures_worker.__qualname__ = __name__, "_futures_worker"
    globals()["_futures_worker"] = _futures_worker
    cf_process._process_worker = _futures_worker
    Executor.__init__ = patched_init
    Executor.submit = patched_submit


def install():
    if _PATH is None or sys.version_info < (3, 8):
        return
    for patch in (_patch_pool, _patch_process, _patch_futures):
        try:
            patch()
        except Exception as e:  # never break the program over a patch
            _send("note", text="poolscope could not watch %s: %s" % (patch.__name__, e))
    import atexit

    atexit.register(_flush)
    _send("hello", now=True, version=sys.version.split()[0], executable=sys.executable,
          main=os.getpid() == int(os.environ.get("POOLSCOPE_WATCH_MAIN", "0") or 0))
