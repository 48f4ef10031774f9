# The seed asks: "can processes be added dynamically?" Yes: until close(), tasks can be
# submitted while the pool runs. Three more arrive 1.5 s after the first five.
from multiprocessing import Pool
import os, time, random

def long_time_task(name):
    print('Run task %s (%s)...' % (name, os.getpid()))
    start = time.time()
    time.sleep(random.random() * 2)
    end = time.time()
    print('Task %s runs %0.2f seconds.' % (name, (end - start)))

if __name__=='__main__':
    p = Pool(4)
    for i in range(5):
        p.apply_async(long_time_task, args=(i,))
    time.sleep(1.5)
    for i in range(5, 8):
        p.apply_async(long_time_task, args=(i,))
    p.close()
    p.join()
    print('All subprocesses done.')
