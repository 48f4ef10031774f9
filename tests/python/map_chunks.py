from multiprocessing import Pool
import time
def f(x):
    time.sleep(0.01)
    return x * x
if __name__ == "__main__":
    with Pool(3) as p:
        print(sum(p.map(f, range(40))))
