# The seed asks: "it seems the pool's processes only start running after p.close()".
# Here the program sleeps 1 s before close(): the tasks start at once, long before
# close() (see the close() marker on the timeline).
from multiprocessing import Pool
import os, time, random

def long_time_task(name):
    print('Run task %s (%s)...' % (name, os.getpid()))
    start = time.time()
    time.sleep(random.random() * 3)
    end = time.time()
    print('Task %s runs %0.2f seconds.' % (name, (end - start)))

if __name__=='__main__':
    print('Parent process %s.' % os.getpid())
    p = Pool(4)
    for i in range(5):
        p.apply_async(long_time_task, args=(i,))
    time.sleep(1)
    print('Waiting for all subprocesses done...')
    p.close()
    print('close pool...')
    p.join()
    print('All subprocesses done.')
