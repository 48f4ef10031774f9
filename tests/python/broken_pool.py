"""ProcessPoolExecutor(1): work(0) and work(1) return, work(2)'s worker dies mid-call
(os._exit), which breaks the pool; work(3) never starts. Each result or error is
printed; the program itself ends well."""
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


def work(i):
    if i == 2:
        os._exit(1)
    return i


if __name__ == "__main__":
    with ProcessPoolExecutor(1) as ex:
        futures = [ex.submit(work, i) for i in range(4)]
        for f in futures:
            try:
                print(f.result())
            except BrokenProcessPool:
                print("broken")
