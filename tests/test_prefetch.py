"""edgetl.runtime.prefetch: order, per-item errors, iterator errors, early stop (no TF)."""

import threading

import pytest

from edgetl.runtime.prefetch import prefetched


def _decode(x):
    if x == "bad":
        raise ValueError("cannot decode bad")
    return x * 2


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_order_values_and_per_item_errors(depth):
    got = list(prefetched([1, "bad", 3, None, 4], _decode, depth, skip=lambda x: x is None))
    assert [g.item for g in got] == [1, "bad", 3, None, 4]
    assert [g.value for g in got] == [2, None, 6, None, 8]
    assert isinstance(got[1].error, ValueError) and "bad" in str(got[1].error)
    assert got[3].error is None and got[3].decode_ms == 0.0
    assert all(g.decode_ms >= 0 for g in got)


def test_iterator_error_is_raised_at_its_position():
    def items():
        yield 1
        yield 2
        raise RuntimeError("source broke")

    seen = []
    with pytest.raises(RuntimeError, match="source broke"):
        for g in prefetched(items(), _decode, 2):
            seen.append(g.value)
    assert seen == [2, 4]


def test_early_stop_releases_the_worker():
    before = threading.active_count()
    gen = prefetched(iter(range(10_000)), _decode, 2)
    assert next(gen).value == 0
    gen.close()  # what a `break` or an exception in the consumer does
    assert threading.active_count() == before
