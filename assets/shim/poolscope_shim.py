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
from array import array

_PATH = os.environ.get("POOLSCOPE_WATCH")
_state = {"sock": None, "pid": None, "lock": threading.Lock(), "dead": False, "buf": [],
          "size": 0, "flushed": 0, "ran": [], "task": None, "chunk": None,
          "held": bytearray(), "dropped": 0}
# Reports held for a poolscope that does not read (stopped, or far behind), at most.
_MAX_HELD = 8 * 1024 * 1024
# The first Python process watched is the program; the processes it starts inherit this.
os.environ.setdefault("POOLSCOPE_WATCH_MAIN", str(os.getpid()))


def _id_counter():
    """Task ids are given in the process that submits: 1, 2, ... in the program's main
    process; in any other (a pool's worker running a pool of its own, a child it forked
    or spawned), in a space of its own, PID x 2^32, so no two processes give one id."""
    pid = os.getpid()
    main = os.environ.get("POOLSCOPE_WATCH_MAIN") == str(pid)
    return itertools.count(1 if main else (pid << 32) + 1)


_ids = _id_counter()
_pools = itertools.count(1)
# Reports wait in a buffer at most this long while tasks stream (ns).
_BATCH_NS = 1_000_000
_clock = time.monotonic_ns


def _reset_after_fork():
    global _ids
    _ids = _id_counter()
    _state.update(sock=None, pid=None, lock=threading.Lock(), buf=[], size=0, flushed=0,
                  ran=[], task=None, chunk=None, held=bytearray(), dropped=0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _push(data):
    """Queue one encoded report (under the lock). Tasks that ran before it go first:
    poolscope reads each process's reports in the order they happened."""
    if _state["ran"]:
        _ran_report()
    _state["buf"].append(data)
    _state["size"] += len(data)


def _ran_report():
    # Tasks that ran since the last batch: [task, start, end] each, in one report.
    ran, _state["ran"] = _state["ran"], []
    line = '{"kind":"ran","pid":%d,"t":%d,"tasks":%s}\n' % (
        os.getpid(), time.monotonic_ns(), json.dumps(ran))
    _state["buf"].append(line.encode())


def _flush_locked(wait=0.0):
    """Send what is queued without ever blocking the program: what the socket does not
    take now is held (up to _MAX_HELD, then new reports are dropped and counted) and sent
    by the flusher a millisecond later. With `wait`, keep sending up to that many
    seconds (at a worker's or the program's end, and when poolscope asks)."""
    if _state["ran"]:
        _ran_report()
    if _state["dead"]:
        return
    held = _state["held"]
    if _state["buf"]:
        data = b"".join(_state["buf"])
        _state["buf"], _state["size"] = [], 0
        if len(held) + len(data) > _MAX_HELD:
            _state["dropped"] += data.count(b"\n")
        else:
            held += data
    if not held and _state["dropped"]:
        held += b'{"kind":"note","pid":%d,"t":%d,"text":"%d reports of process %d were dropped: poolscope did not read them in time"}\n' % (
            os.getpid(), _clock(), _state["dropped"], os.getpid())
        _state["dropped"] = 0
    if not held:
        return
    _state["flushed"] = time.monotonic_ns()
    deadline = time.monotonic() + wait
    try:
        sock = _connected()
        while held:
            try:
                del held[:sock.send(held, socket.MSG_DONTWAIT)]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                import select
                select.select([], [sock], [], left)
    except OSError:
        # poolscope went away: the program goes on unobserved.
        _state["dead"] = True
        return
    if held:
        try:
            _ensure_flusher()
            _state["pending"].set()
        except RuntimeError:  # no new thread at interpreter shutdown: nothing to retry
            pass


def _connected():
    """This process's socket to poolscope (each process has its own)."""
    if _state["sock"] is None or _state["pid"] != os.getpid():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(_PATH)
        _state["sock"], _state["pid"] = s, os.getpid()
    return _state["sock"]


def _flush():
    """Send everything now, waiting up to 2 s for a slow poolscope (rare moments: a
    worker's or the program's end, a pool about to be terminated)."""
    with _state["lock"]:
        _flush_locked(wait=2.0)


def _flusher():
    """Sends what waited in the buffer at most a millisecond after it was queued, so a
    report never waits for the next one. While a worker runs a map's chunk it ticks every
    millisecond: an item that has not moved on since the last tick is slow, and its start
    is shown at once (the chunk's fast items are reported when the chunk is done)."""
    while True:
        _state["pending"].wait()
        time.sleep(_BATCH_NS / 1e9)
        with _state["lock"]:
            chunk = _state["chunk"]
            if chunk is None:
                _state["pending"].clear()
            else:
                chunk.tick()
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
        _push(line)
        if now or _state["size"] > 65536:
            _flush_locked()
        else:
            _state["pending"].set()


class _WorkerQueue:
    """A pool worker's task or result queue. Getting a task says what runs next (a map's
    chunk, or a single item of imap); putting its result closes it. Reports leave in
    batches (the flusher), at the worker's end, and when the program terminates its pool
    (a sync, see _listen), never one send per task."""

    def __init__(self, queue, flush_results=False):
        self._queue = queue
        self._flush_results = flush_results

    def get(self, *args, **kwargs):
        task = self._queue.get(*args, **kwargs)
        if task is None:
            # The sentinel: this worker ends.
            _flush()
            return task
        try:
            job, i, func, fargs, kwds = task
        except (TypeError, ValueError):  # concurrent.futures' _CallItem: its fn is a _Task
            return task
        if isinstance(func, _MapTask):
            # imap with chunksize 1: item i.
            _open(func, func.first + i)
        elif func is _mapstar or func is _starmapstar:
            mapped = fargs[0][0]
            if isinstance(mapped, _MapTask):
                _open(mapped, mapped.first + i * mapped.chunksize)
        return task

    def put(self, obj, *args, **kwargs):
        chunk = _state["chunk"]
        if chunk is not None:
            _close(chunk, obj)
        # ProcessPoolExecutor: what this result says ran leaves before the result does,
        # so a worker that dies next (os._exit, a crash: a BrokenProcessPool) takes with
        # it nothing the program saw done. A call there costs a round trip of its own;
        # multiprocessing.Pool's results stay batched (a send per imap item would add
        # a fifth to it), and a Pool worker killed outright may take its last
        # millisecond of reports with it.
        if self._flush_results and (_state["ran"] or _state["buf"]):
            with _state["lock"]:
                _flush_locked()
        return self._queue.put(obj, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._queue, name)


_mapstar = _starmapstar = None


def _open(mapped, base):
    mapped.base, mapped.stamps, mapped.seen, mapped.shown = base, [], 0, 0
    if sys.stdout.__class__ is not _Tee:
        sys.stdout, sys.stderr = _Tee(sys.stdout, "stdout"), _Tee(sys.stderr, "stderr")
    _ensure_flusher()
    _state["chunk"] = mapped
    _state["pending"].set()


def _close(chunk, result):
    """A chunk's items ran: one report of when each started; each ended as the next
    started, the last when the result was put. If one raised (Python stops the chunk
    there), it is the last that started."""
    end = _clock()
    stamps = chunk.stamps
    _state["chunk"] = None
    if not stamps:
        return
    raised = None
    try:
        if hasattr(result, "work_id"):
            # concurrent.futures' _ResultItem: the chunk raised if it carries one.
            if result.exception is not None:
                raised = getattr(result.exception, "__cause__", None) or result.exception
        else:
            ok, value = result[2]
            if not ok:
                raised = getattr(value, "exc", value)  # Python's ExceptionWithTraceback
    except Exception:  # not a result we know: nothing to say about it
        pass
    error = ""
    if raised is not None:
        error = ',"error":%s' % json.dumps("%s: %s" % (type(raised).__name__, raised))
    stamps.append(end)
    with _state["lock"]:
        _push(_run_report(chunk.base, stamps, error))
        if _state["size"] > 65536:
            _flush_locked()


def _run_report(first, stamps, error=""):
    """A "run" report: the tasks from `first` in order, each starting at its stamp and
    ending as the next begins (one task fewer than stamps). The stamps go as the hex of
    their bytes: made at C speed (a chunk may hold 12 500 items)."""
    words = array("Q", stamps)
    if sys.byteorder == "big":
        words.byteswap()  # poolscope reads them little-endian
    return ('{"kind":"run","pid":%d,"t":%d,"first":%d,"stamps":"%s"%s}\n' % (
        os.getpid(), stamps[-1], first, words.tobytes().hex(), error)).encode()


def _report_done_part(chunk):
    """The items of a chunk still running that are done (each ended as the next
    started), reported now, and the running one's start (under the lock): before a slow
    item's start, and when the pool is about to be terminated (what finished keeps its
    outcome). The chunk goes on from the running item."""
    stamps = chunk.stamps[:]
    done = len(stamps) - 1
    if done > 0:
        _push(_run_report(chunk.base, stamps))
        # The list the worker appends to, cut in place: its next item lands after these.
        del chunk.stamps[:done]
        chunk.base += done
        chunk.seen = max(0, chunk.seen - done)
        chunk.shown = max(0, chunk.shown - done)
    if chunk.shown != 1:
        chunk.shown = 1
        _push(('{"kind":"start","pid":%d,"t":%d,"task":%d}\n' % (
            os.getpid(), stamps[-1], chunk.base)).encode())


def _listen():
    """In a pool worker: a thread that flushes when poolscope asks (b"F"), because the
    program is about to terminate the pool. Reports go out every millisecond anyway;
    this covers the last one."""
    if _PATH is None or _state["dead"]:
        return

    def serve(sock):
        while True:
            try:
                asked = sock.recv(64)
            except OSError:
                return
            if not asked:
                return
            with _state["lock"]:
                chunk = _state["chunk"]
                if chunk is not None and chunk.stamps:
                    _report_done_part(chunk)
                _push(b'{"kind":"flushed","pid":%d,"t":%d}\n' % (
                    os.getpid(), _clock()))
                _flush_locked(wait=0.5)

    try:
        with _state["lock"]:
            sock = _connected()
            sock.sendall(b'{"kind":"listening","pid":%d,"t":%d}\n' % (os.getpid(), _clock()))
    except OSError:
        _state["dead"] = True
        return
    threading.Thread(target=serve, args=(sock,), name="poolscope-shim-listen",
                     daemon=True).start()


def _sync(timeout=0.5):
    """Wait (at most `timeout`) until every listening worker has sent what it holds."""
    if _PATH is None or _state["dead"]:
        return

    _flush()
    # On a connection of its own: this process's own one may be read by its listening
    # thread (a pool's worker running a pool of its own), which would take the answer.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(_PATH)
        sock.sendall(b'{"kind":"sync","pid":%d,"t":%d}\n' % (os.getpid(), _clock()))
        sock.recv(64)
    except (OSError, ValueError):
        pass
    finally:
        sock.close()


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
        task = _state["task"]
        chunk = _state["chunk"]
        if chunk is not None and chunk.stamps:
            task = chunk.base + len(chunk.stamps) - 1
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
        _push(data)
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
    """A map's function. Pickled once per chunk: in the worker, _open gives its copy the
    chunk's first task and a list for the items' start times, which is all it records
    per item (a map may have 100 000 items; a report per item would cost more than the
    item)."""

    def __init__(self, func, first, chunksize):
        self.func, self.first, self.chunksize = func, first, chunksize
        self.stamps = None

    def __getstate__(self):
        return (self.func, self.first, self.chunksize)

    def __setstate__(self, state):
        self.func, self.first, self.chunksize = state
        self.stamps = None

    def __call__(self, *args):
        # starmap unpacks each item's arguments; map passes the item.
        self.stamps.append(_clock())
        return self.func(*args)

    def tick(self):
        """The flusher's millisecond tick: an item that is still the latest after a whole
        tick is slow; its start is shown now, after the ends of the items before it, so
        poolscope hears of them in the order they happened (under the lock)."""
        n = len(self.stamps)
        if n and n == self.seen and n != self.shown:
            _report_done_part(self)
        self.seen = len(self.stamps)


class _FuturesMapTask:
    """ProcessPoolExecutor.map's function: each item comes with its task number first.
    A chunk is pickled per submit, so a fresh copy in the worker is a new chunk: its first
    call opens it (see _open), and putting the chunk's result closes it."""

    def __init__(self, func, chunksize):
        self.func, self.chunksize = func, chunksize
        self.stamps = None

    def __getstate__(self):
        return (self.func, self.chunksize)

    def __setstate__(self, state):
        self.func, self.chunksize = state
        self.stamps = None

    def __call__(self, task, *args):
        if self.stamps is None:
            _open(self, task)
        self.stamps.append(_clock())
        return self.func(*args)

    tick = _MapTask.tick


class _LazyMapTask:
    """imap's function over a generator: each item comes with its task number (see
    _numbered) and runs as a task of its own, as apply_async's do."""

    def __init__(self, func):
        self.func = func

    def __call__(self, numbered):
        task, item = numbered
        return _run(task, self.func, (item,), {})


def _numbered(pool, func, iterable):
    """The items of a generator, each with its task number, reported as it is taken (by
    the pool's task thread, as Python takes them: no further ahead)."""
    name = json.dumps(_name(func))
    for item in iterable:
        task = next(_ids)
        _quick('{"kind":"submit","pid":%d,"t":%d,"task":%d,"pool":%d,"func":%s,"args":%s}\n' % (
            os.getpid(), _clock(), task, pool, name, json.dumps(_short((item,)))))
        yield task, item


def _described(items):
    """Each item's short repr, as one string with \\x1f between them: a map may have
    100 000 items, so this runs at C speed where it can."""
    try:
        described = list(map(repr, items))
        if described and max(map(len, described)) > 24:
            described = [d if len(d) <= 24 else d[:23] + "…" for d in described]
        text = "\x1f".join(described)
        if text.count("\x1f") == len(described) - 1:
            return text
    except Exception:  # a repr that raises must not break the program
        pass
    return "\x1f".join(_short(v, 24).replace("\x1f", " ") for v in items)


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

    def _items(self, func, iterable, chunksize=None, star=False):
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        pool = getattr(self, "_poolscope_id", 0)
        if chunksize is None:
            # Pool.map's own default (imap's is 1).
            chunksize, extra = divmod(len(items), len(getattr(self, "_pool", [])) * 4 or 1)
            chunksize += 1 if extra else 0
        chunksize = max(1, chunksize)
        first = next(_ids)
        # The rest of the ids of this map: one report for all its tasks.
        for _ in range(len(items) - 1):
            next(_ids)
        _send("map", pool=pool, first=first, n=len(items), func=_name(func),
              chunksize=chunksize, star=star, args=_described(items))
        return _MapTask(func, first, chunksize), items

    @functools.wraps(original["_map_async"])
    def _map_async(self, func, iterable, mapper, chunksize=None, *rest, **more):
        wrapped, items = _items(self, func, iterable, chunksize, mapper is mp_pool.starmapstar)
        return original["_map_async"](self, wrapped, items, mapper, chunksize, *rest, **more)

    def _imap(name):
        @functools.wraps(original[name])
        def imap(self, func, iterable, chunksize=1):
            if not hasattr(iterable, "__len__"):
                # A generator is read as Python reads it (an endless one too): each item
                # is a task of its own, numbered when it is taken.
                pool = getattr(self, "_poolscope_id", 0)
                return original[name](self, _LazyMapTask(func), _numbered(pool, func, iterable),
                                      chunksize)
            wrapped, items = _items(self, func, iterable, chunksize or 1)
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
    global _mapstar, _starmapstar
    _mapstar, _starmapstar = mp_pool.mapstar, mp_pool.starmapstar

    @functools.wraps(worker)
    def _worker(inqueue, outqueue, *args, **kwargs):
        _listen()
        try:
            return worker(_WorkerQueue(inqueue), _WorkerQueue(outqueue), *args, **kwargs)
        finally:
            # A worker may end without another get (maxtasksperchild): send what is left.
            _flush()

    _worker.__module__, _worker.__qualname__ = __name__, "_pool_worker"
    globals()["_pool_worker"] = _worker
    mp_pool.worker = _worker

    terminate_pool = Pool._terminate_pool.__func__

    @functools.wraps(terminate_pool)
    def _terminate_pool(cls, *args, **kwargs):
        # Its workers are about to be killed: have them send their last reports first.
        _sync()
        return terminate_pool(cls, *args, **kwargs)

    Pool._terminate_pool = classmethod(_terminate_pool)
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
        # A chunk of map (partial(_process_chunk, _FuturesMapTask)): its items are tasks.
        if isinstance(getattr(fn, "args", (None,))[0], _FuturesMapTask):
            return submit(self, fn, *args, **kwargs)
        task = _submit(getattr(self, "_poolscope_id", 0), fn, args)
        return submit(self, _Task(fn, task), *args, **kwargs)

    original_map = Executor.map

    @functools.wraps(original_map)
    def patched_map(self, fn, *iterables, timeout=None, chunksize=1, **more):
        # Python's own map takes the whole input at once too (it submits every chunk).
        items = list(zip(*iterables))
        if not items or chunksize < 1:
            return original_map(self, fn, *iterables, timeout=timeout, chunksize=chunksize,
                                **more)
        first = next(_ids)
        for _ in range(len(items) - 1):
            next(_ids)
        _send("map", pool=getattr(self, "_poolscope_id", 0), first=first, n=len(items),
              func=_name(fn), chunksize=chunksize, star=True, args=_described(items))
        numbered = range(first, first + len(items))
        return original_map(self, _FuturesMapTask(fn, chunksize), numbered, *zip(*items),
                            timeout=timeout, chunksize=chunksize, **more)

    process_worker = cf_process._process_worker

    @functools.wraps(process_worker)
    def _futures_worker(call_queue, result_queue, *args, **kwargs):
        _listen()
        try:
            return process_worker(
                _WorkerQueue(call_queue), _WorkerQueue(result_queue, flush_results=True),
                *args, **kwargs
            )
        finally:
            _flush()

    _futures_worker.__module__, _futures_worker.__qualname__ = __name__, "_futures_worker"
    globals()["_futures_worker"] = _futures_worker
    cf_process._process_worker = _futures_worker
    Executor.__init__ = patched_init
    Executor.submit = patched_submit
    Executor.map = patched_map


def _patch_subprocess():
    import subprocess

    Popen = subprocess.Popen
    init, wait, poll, communicate = Popen.__init__, Popen.wait, Popen.poll, Popen.communicate

    def report_end(self):
        # Once, when the program first learns the exit status (not within communicate:
        # its output goes first).
        task = self.__dict__.get("_poolscope_task")
        if task is not None and self.returncode is not None and not self.__dict__.get(
                "_poolscope_communicating"):
            self._poolscope_task = None
            _send("command", now=True, task=task, child=self.pid, label="end",
                  exitcode=self.returncode)

    @functools.wraps(init)
    def patched_init(self, args, *rest, **kwargs):
        init(self, args, *rest, **kwargs)
        try:
            if isinstance(args, (str, bytes, os.PathLike)):
                argv = [os.fsdecode(args)]
                if kwargs.get("shell"):
                    argv = ["/bin/sh", "-c", argv[0]]
            else:
                argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a)
                        for a in args]
            task = next(_ids)
            self._poolscope_task = task
            _send("command", now=True, task=task, child=self.pid, label="start", args=argv)
        except Exception:  # never break the program over a report
            pass

    @functools.wraps(wait)
    def patched_wait(self, *args, **kwargs):
        code = wait(self, *args, **kwargs)
        report_end(self)
        return code

    @functools.wraps(poll)
    def patched_poll(self, *args, **kwargs):
        code = poll(self, *args, **kwargs)
        report_end(self)
        return code

    @functools.wraps(communicate)
    def patched_communicate(self, *args, **kwargs):
        self._poolscope_communicating = True
        try:
            out, err = communicate(self, *args, **kwargs)
        finally:
            self._poolscope_communicating = False
        task = self.__dict__.get("_poolscope_task")
        if task is not None:
            for stream, data in (("stdout", out), ("stderr", err)):
                if data:
                    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                    _send("output", task=task, stream=stream, text=text)
        report_end(self)
        return out, err

    Popen.__init__ = patched_init
    Popen.wait = patched_wait
    Popen.poll = patched_poll
    Popen.communicate = patched_communicate


def install():
    if _PATH is None or sys.version_info < (3, 8):
        return
    for patch in (_patch_pool, _patch_process, _patch_futures, _patch_subprocess):
        try:
            patch()
        except Exception as e:  # never break the program over a patch
            _send("note", text="poolscope could not watch %s: %s" % (patch.__name__, e))
    import atexit

    atexit.register(_flush)
    _send("hello", now=True, version=sys.version.split()[0], executable=sys.executable,
          main=os.environ.get("POOLSCOPE_WATCH_MAIN") == str(os.getpid()))
