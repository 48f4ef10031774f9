# The seed asks: "on a 2-core machine, will Pool(4) only run 2 at once?" No: Pool(4)
# runs 4 processes at once whatever the core count; on 2 cores they share the CPUs, so
# each CPU-bound task takes longer. The timeline shows 4 at once.
from multiprocessing import Pool
import os, time

def burn(name):
    start = time.time()
    x = 0
    for i in range(6_000_000):
        x += i * i
    print('Task %s (%s) burned %0.2f seconds on %d CPUs.'
          % (name, os.getpid(), time.time() - start, os.cpu_count()))

if __name__ == '__main__':
    with Pool(4) as p:
        p.map(burn, range(8), chunksize=1)
