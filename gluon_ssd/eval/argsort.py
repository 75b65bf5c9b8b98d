"""numpy 1.23's default argsort, the order of equal values included: the ranking GluonCV's VOC metric gives ties.

Kept apart from :mod:`gluon_ssd.eval.voc` because it is an algorithm of its own (numpy's introsort written out),
not a fact of the metric.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NUMPY_INSERTION_SORT_MAX", "numpy123_argsort"]

# numpy's introsort sorts a slice of at most this many elements by insertion sort, which keeps ties in
# input order; longer slices are partitioned and their ties come out in an implementation-defined order.
NUMPY_INSERTION_SORT_MAX = 16


def numpy123_argsort(values: np.ndarray) -> np.ndarray:
    """``values.argsort()`` as numpy 1.23 (the numpy GluonCV ran with) computes it: the order of equal values too.

    GluonCV ranks detections with numpy's default argsort, an introsort whose order of equal values is an
    artefact of the algorithm; numpy 1.25+ sorts with SIMD kernels on AVX-512 CPUs and orders ties otherwise. This
    is that introsort, written out (median-of-three quicksort down to 16 elements, then insertion sort; heapsort
    past twice the depth of a balanced tree), so that ``tie_order='gluoncv'`` gives GluonCV's answer on any numpy.
    Values without ties take numpy's own argsort (one answer). ``values``: (N,) real; NaNs sort last as in numpy.

    Returns
    -------
    (N,) int64 indices.
    """
    values = np.asarray(values).ravel()
    n = values.size
    if n < 2 or np.unique(values).size == n:
        return np.argsort(values, kind="stable")  # distinct values: every sort agrees
    v = values.tolist()
    if any(x != x for x in v):  # numpy puts NaNs last, after inf, all equal: a key above every number
        v = [(1.0, 0.0) if x != x else (0.0, x) for x in v]
    idx = list(range(n))
    stack = []
    left, right = 0, n - 1
    depth = 2 * (n.bit_length() - 1)
    while True:
        if depth < 0:
            _heapsort(v, idx, left, right)
        else:
            while right - left + 1 > NUMPY_INSERTION_SORT_MAX:  # numpy: pr - pl > SMALL_QUICKSORT (15)
                mid = left + ((right - left) >> 1)
                if v[idx[mid]] < v[idx[left]]:
                    idx[mid], idx[left] = idx[left], idx[mid]
                if v[idx[right]] < v[idx[mid]]:
                    idx[right], idx[mid] = idx[mid], idx[right]
                if v[idx[mid]] < v[idx[left]]:
                    idx[mid], idx[left] = idx[left], idx[mid]
                pivot = v[idx[mid]]
                i, j = left, right - 1
                idx[mid], idx[j] = idx[j], idx[mid]
                while True:
                    i += 1
                    while v[idx[i]] < pivot:
                        i += 1
                    j -= 1
                    while pivot < v[idx[j]]:
                        j -= 1
                    if i >= j:
                        break
                    idx[i], idx[j] = idx[j], idx[i]
                idx[i], idx[right - 1] = idx[right - 1], idx[i]
                depth -= 1
                if i - left < right - i:  # the larger part waits on the stack
                    stack.append((i + 1, right, depth))
                    right = i - 1
                else:
                    stack.append((left, i - 1, depth))
                    left = i + 1
            for i in range(left + 1, right + 1):
                item = idx[i]
                key = v[item]
                j = i
                while j > left and key < v[idx[j - 1]]:
                    idx[j] = idx[j - 1]
                    j -= 1
                idx[j] = item
        if not stack:
            break
        left, right, depth = stack.pop()
    return np.asarray(idx, dtype=np.int64)


def _heapsort(v, idx, left, right):
    """numpy 1.23's heapsort of ``idx[left:right + 1]`` by ``v`` (the introsort's fallback), in place."""
    a = idx[left:right + 1]
    n = len(a)
    a.insert(0, None)  # numpy's heapsort indexes from 1

    def sift(i, size):
        item = a[i]
        j = i * 2
        while j <= size:
            if j < size and v[a[j]] < v[a[j + 1]]:
                j += 1
            if v[item] < v[a[j]]:
                a[i] = a[j]
                i = j
                j += j
            else:
                break
        a[i] = item

    for i in range(n >> 1, 0, -1):
        sift(i, n)
    for size in range(n, 1, -1):
        a[1], a[size] = a[size], a[1]
        sift(1, size - 1)
    idx[left:right + 1] = a[1:]
