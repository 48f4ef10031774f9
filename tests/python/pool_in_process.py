"""A Pool inside a Process, then two pools at once (one map_async running while another maps)."""
import multiprocessing
def inner(x):
    return x * 2
def child():
    with multiprocessing.Pool(2) as pool:
        assert pool.map(inner, range(5)) == [0, 2, 4, 6, 8]
if __name__ == "__main__":
    p = multiprocessing.Process(target=child)
    p.start(); p.join()
    with multiprocessing.Pool(2) as pool:
        a = pool.map_async(inner, range(3))
        with multiprocessing.Pool(2) as other:
            assert other.map(inner, range(3)) == [0, 2, 4]
        assert a.get() == [0, 2, 4]
