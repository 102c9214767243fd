"""The writer's reused memory: views of an arena are disjoint until it is reset, and the same
memory is handed out again after it (so a part's arrays cost no fresh pages)."""

from __future__ import annotations

import numpy as np

from cache_tools.write.arena import Arena, plain_empty


def _span(a: np.ndarray) -> tuple[int, int]:
    lo = a.__array_interface__["data"][0]
    return lo, lo + a.nbytes


def test_views_are_disjoint_typed_and_reused_after_reset():
    arena = Arena(block_bytes=1 << 16)
    shapes = [((7, 33), np.float16), ((100,), np.float32), ((3, 5, 8), np.float16), ((900, 16), np.float16)]
    views = [arena.take(s, d) for s, d in shapes * 3]  # more than one block's worth
    for v, (shape, dtype) in zip(views, shapes * 3):
        assert v.shape == shape and v.dtype == dtype and v.flags.c_contiguous
        assert _span(v)[0] % 64 == 0
    for k, v in enumerate(views):
        v[...] = k
    for k, v in enumerate(views):  # no view wrote over another
        assert (v == k).all()
    spans = sorted(_span(v) for v in views)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    held = arena.nbytes
    arena.reset()
    again = [arena.take(s, d) for s, d in shapes * 3]
    assert [_span(v) for v in again] == [_span(v) for v in views]  # the same memory, in order
    assert arena.nbytes == held


def test_arrays_larger_than_a_block_get_buffers_kept_for_the_next_that_fit():
    arena = Arena(block_bytes=1 << 12)
    big = arena.take((100, 64), np.float16)  # 12,800 B > a block
    other = arena.take((50, 64), np.float32)
    assert _span(big)[1] <= _span(other)[0] or _span(other)[1] <= _span(big)[0]
    arena.reset()
    smaller = arena.take((90, 64), np.float16)  # fits in the first buffer kept, the smallest that does
    assert _span(smaller)[0] == _span(big)[0]
    assert arena.take((50, 64), np.float32).__array_interface__["data"][0] == _span(other)[0]
    held = arena.nbytes
    arena.take((1000, 64), np.float16)  # none kept fits: a new one
    assert arena.nbytes > held


def test_plain_empty_is_an_ordinary_writable_array():
    a = plain_empty((5, 3), np.float16)
    assert a.shape == (5, 3) and a.dtype == np.float16 and a.flags.writeable
    a[...] = 2
    assert float(a.sum()) == 30.0
    assert plain_empty((0, 4), np.float32).shape == (0, 4)
