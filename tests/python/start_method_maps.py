"""ProcessPoolExecutor.map and imap_unordered over a generator, under the start method in argv[1]."""
import multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor
def square(x):
    print(f"squaring {x}")
    return x * x
if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        assert list(ex.map(square, range(10), chunksize=3)) == [x * x for x in range(10)]
    with ctx.Pool(2) as pool:
        assert sorted(pool.imap_unordered(square, (i for i in range(4)))) == [0, 1, 4, 9]
