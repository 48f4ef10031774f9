# Two pools at once (2 and 3 workers): each pool's workers sit together on the timeline.
from multiprocessing import Pool
import time
def f(x):
    time.sleep(0.05)
    return x
if __name__ == "__main__":
    with Pool(2) as a, Pool(3) as b:
        ra = a.map_async(f, range(4), chunksize=1)
        time.sleep(0.02)
        rb = b.map_async(f, range(6), chunksize=1)
        ra.get(); rb.get()
