# Python's Pool(2) over N trivial calls: `map` (its default chunks) or `imap` (chunksize
# 1). The peer that benches/workers.sh and benches/watch.sh measure poolscope against.
#   python3 benches/noop_pool.py N map|imap
import sys
from multiprocessing import Pool


def noop(i):
    return i


if __name__ == "__main__":
    n, how = int(sys.argv[1]), sys.argv[2]
    with Pool(2) as pool:
        if how == "imap":
            for _ in pool.imap(noop, range(n), chunksize=1):
                pass
        else:
            pool.map(noop, range(n))
