"""baselines._cut_one_by_one (the sequential rule's fallback) on Python floats gives the very
bits the numpy version it replaced gave (s33-warm: it was most of the guard's baselines' time)."""

import numpy as np
import pytest

from optimizer import baselines


def numpy_cut_one_by_one(want_w, coef, group, order, room, min_w) -> np.ndarray:
    """The replaced implementation, verbatim: the reference."""
    got = np.zeros_like(want_w)
    current, left = None, None
    for j in order:
        if group[j] != current:
            current, left = group[j], room[j].astype(float)
        draws = coef[j] > 0
        give = min(float(want_w[j]), float(np.min(left[draws] / coef[j][draws], initial=np.inf)))
        if give >= min_w[j]:
            got[j] = give
            left = np.maximum(left - give * coef[j], 0.0)
    return got


def cars(rng, k: int, n_res: int):
    """k cars in a few groups, ranks shuffled; coefficients with zeros (a phase a car does not
    draw from), room with zeros and infinities, wants with ties, minimums with zeros."""
    want = rng.choice([0.0, 1380.0, 4140.0, 7360.0, 11040.0, 22080.0], size=k) * \
        rng.choice([1.0, 0.5, 1.0 / 3.0], size=k)
    coef = rng.choice([0.0, 1.0, 1.0 / 230.0, 1.0 / 690.0], size=(k, n_res))
    coef[:, 0] = np.where(rng.random(k) < 0.9, coef[:, 0], 0.0)
    group = rng.integers(0, 4, size=k)
    room_by_group = rng.choice([0.0, 3000.0, 20000.0, 55.5, np.inf], size=(4, n_res))
    room = room_by_group[group]
    min_w = rng.choice([0.0, 1380.0, 4140.0], size=k)
    rank = rng.permutation(k)
    order = np.lexsort((rank, group))
    return want, coef, group, order, room, min_w


@pytest.mark.parametrize("n_res", [1, 3, 4])
@pytest.mark.parametrize("seed", range(20))
def test_cut_one_by_one_gives_the_numpy_versions_bits(seed, n_res):
    rng = np.random.default_rng(seed)
    args = cars(rng, 200, n_res)
    got = baselines._cut_one_by_one(*args)
    expected = numpy_cut_one_by_one(*args)
    assert got.tobytes() == expected.tobytes()
    assert (got > 0).any() and (got == 0).any()   # both branches ran


def test_cut_one_by_one_keeps_negative_zero_room_as_numpy_did():
    # a room of -0.0 (a limit minus what is used, exactly) divides to -0.0: the same zero as
    # before, sign included
    want = np.array([0.0, 5.0])
    coef = np.array([[1.0, 0.5], [1.0, 0.5]])
    room = np.array([[-0.0, 10.0], [-0.0, 10.0]])
    args = (want, coef, np.zeros(2, dtype=np.int64), np.array([0, 1]), room, np.zeros(2))
    got = baselines._cut_one_by_one(*args)
    assert got.tobytes() == numpy_cut_one_by_one(*args).tobytes()
