# Pool.map edge cases, chosen by the first argument:
#   burst    - 2000 quick items, then the pool is terminated at once (`with`)
#   raise    - an item in the middle of a chunk raises
#   starmap  - starmap over argument pairs, each printing
import sys
from multiprocessing import Pool


def square(x):
    return x * x


def fragile(x):
    if x == 7:
        raise ValueError("no sevens")
    return x


def add(a, b):
    print("adding %d and %d" % (a, b))
    return a + b


if __name__ == "__main__":
    how = sys.argv[1]
    with Pool(2) as p:
        if how == "burst":
            print(sum(p.map(square, range(2000))))
        elif how == "raise":
            try:
                p.map(fragile, range(10), chunksize=5)
            except ValueError as e:
                print("raised:", e)
        elif how == "starmap":
            print(p.starmap(add, [(1, 2), (3, 4), (5, 6)]))
