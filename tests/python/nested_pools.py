"""A ProcessPoolExecutor(2) whose three tasks each map over a Pool(2) of their own."""
from concurrent.futures import ProcessPoolExecutor
import multiprocessing

def inner(x):
    return x + 1

def outer(n):
    with multiprocessing.Pool(2) as pool:
        return sum(pool.map(inner, range(4)))

if __name__ == "__main__":
    with ProcessPoolExecutor(2) as ex:
        print(list(ex.map(outer, range(3))))
