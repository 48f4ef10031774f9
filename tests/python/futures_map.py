"""ProcessPoolExecutor.map over 10 items in chunks of 3, and over two iterables; one item
of a third map raises."""
from concurrent.futures import ProcessPoolExecutor


def square(x):
    print(f"squaring {x}")
    return x * x


def add(a, b):
    return a + b


def picky(x):
    if x == 4:
        raise ValueError("four is not welcome")
    return x


if __name__ == "__main__":
    with ProcessPoolExecutor(2) as ex:
        assert list(ex.map(square, range(10), chunksize=3)) == [x * x for x in range(10)]
        assert list(ex.map(add, [1, 2], [10, 20])) == [11, 22]
        try:
            list(ex.map(picky, range(6), chunksize=2))
        except ValueError:
            pass
