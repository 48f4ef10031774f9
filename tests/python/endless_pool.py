"""A Pool(2) whose tasks never end; every process writes its PID to the file in argv[1]
(the main one first). With "deaf" in argv[2], the main process ignores SIGTERM."""
import multiprocessing
import os
import signal
import sys
import time

PIDS = sys.argv[1]


def forever(_):
    with open(PIDS, "a") as f:
        f.write(f"{os.getpid()}\n")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "deaf":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(PIDS, "a") as f:
        f.write(f"{os.getpid()}\n")
    with multiprocessing.Pool(2) as pool:
        pool.map(forever, range(2), chunksize=1)
