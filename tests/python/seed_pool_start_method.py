# The seed's Pool program with the start method given as its argument (spawn: fresh
# interpreters; forkserver: 3.14's default on Linux).
import multiprocessing
import sys
from multiprocessing import Pool
import os, time, random

def long_time_task(name):
    print('Run task %s (%s)...' % (name, os.getpid()))
    start = time.time()
    time.sleep(random.random() * 0.3)
    end = time.time()
    print('Task %s runs %0.2f seconds.' % (name, (end - start)))

if __name__=='__main__':
    multiprocessing.set_start_method(sys.argv[1])
    print('Parent process %s.' % os.getpid())
    p = Pool(4)
    for i in range(5):
        p.apply_async(long_time_task, args=(i,))
    print('Waiting for all subprocesses done...')
    p.close()
    print('close pool...')
    p.join()
    print('All subprocesses done.')
