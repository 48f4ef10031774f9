"""Pool(1).map_async over 6 items in chunks of 3: items 0 and 1 finish, item 2 writes the
file in argv[1] and hangs; then the pool is terminated. With "whole" as argv[1], nothing
hangs and the map runs to its end on Pool(2)."""
import multiprocessing
import os
import sys
import time

MARK = sys.argv[1]


def f(x):
    if x == 2 and MARK != "whole":
        open(MARK, "w").close()
        time.sleep(60)
    # Slow enough that each item's start is shown while it runs.
    time.sleep(0.05)
    return x


if __name__ == "__main__":
    if MARK == "whole":
        with multiprocessing.Pool(2) as pool:
            assert pool.map(f, range(6), chunksize=3) == list(range(6))
        sys.exit(0)
    pool = multiprocessing.Pool(1)
    result = pool.map_async(f, range(6), chunksize=3)
    while not os.path.exists(MARK):
        time.sleep(0.01)
    pool.terminate()
    pool.join()
