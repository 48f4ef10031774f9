"""imap over 30 000 items with chunksize 1 (a report for each, more than a socket holds),
then the file in argv[1] says the program got to its end (argv[1].started: to its start)."""
import multiprocessing
import sys


def same(x):
    return x


if __name__ == "__main__":
    open(sys.argv[1] + ".started", "w").close()
    with multiprocessing.Pool(2) as pool:
        assert sum(pool.imap(same, range(30000))) == sum(range(30000))
    open(sys.argv[1], "w").close()
