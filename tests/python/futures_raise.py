from concurrent.futures import ProcessPoolExecutor
import os


def square(n):
    if n == 7:
        raise ValueError("seven is not welcome")
    print("square %d in %d" % (n, os.getpid()))
    return n * n


if __name__ == "__main__":
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(square, n) for n in range(10)]
        for f in futures:
            try:
                f.result()
            except ValueError as e:
                print("caught", e)
