"""imap_unordered over a generator, then imap over an endless one, left with break."""
import itertools
import multiprocessing


def sq(x):
    return x * x


if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        assert sorted(pool.imap_unordered(sq, (i for i in range(4)), chunksize=2)) == [0, 1, 4, 9]
        for n, y in enumerate(pool.imap(sq, itertools.count())):
            assert y == n * n
            if n >= 5:
                break
