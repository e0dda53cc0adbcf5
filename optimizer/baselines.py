"""Reference allocations: what simple load managers do, and the optimizer's fallback.

All work slot by slot, vectorised over connectors (a loop over slots and tree depth only):

- `uncontrolled`: every car at its maximum from arrival until its request is met, ignoring the
  tree — the reference "no load management", which may violate limits.
- `equal_share`: each car asks for what it can take (maximum, or what is left of its request);
  under an overloaded node all requests are scaled by the same factor (`fit_under_limits`,
  deepest nodes first, each against what its subtrees pass up). Cars pushed below their minimum
  are paused, and the capacity that frees is offered to every car below its request greedily
  (by priority), so a low cap does not pause everyone and no usable watt is left.
- `edf`: earliest deadline first; `llf`: least laxity first (laxity = slots left before departure
  minus slots needed at full power). Both serve cars in priority order against the headroom left
  at every node above them (`serve_in_order`), higher weight first, then the rule's key.

Every baseline except `uncontrolled` respects node power and phase-current limits, connector
maxima, windows, requested energy and the minimum-rate rule (0 or at least min_power_w).
"""

from __future__ import annotations

import weakref

import numpy as np

from optimizer.lp import tight_upper_w
from optimizer.objective import quantised_weight
from optimizer.problem import N_PHASES, Problem

_EPS = 1e-9  # relative margin so re-summed loads stay at or under their limits
_MAX_RETRIES = 4  # equal_share: rounds handing out the room that pausing freed
_RETRY_W = 1e-6   # equal_share: less than this is not worth another round [W]


def _node_depths(problem: Problem) -> np.ndarray:
    return np.asarray(problem.ancestors.sum(axis=0)).ravel().astype(np.int64) - 1


class _Tree:
    """Per-depth grouping of connectors, computed once per problem."""

    def __init__(self, problem: Problem) -> None:
        depth = _node_depths(problem)
        self.max_depth = int(depth.max())
        # ancestor_at[d][i] = the node at depth d above connector i (or -1 when its node is shallower)
        n = problem.n_connectors
        node = problem.connector_node.copy()
        node_depth = depth[node]
        self.ancestor_at = [np.full(n, -1, dtype=np.int64) for _ in range(self.max_depth + 1)]
        current = node.copy()
        current_depth = node_depth.copy()
        for d in range(self.max_depth, -1, -1):
            at = current_depth == d
            self.ancestor_at[d][at] = current[at]
            up = at & (problem.node_parent[current] >= 0)
            current = np.where(up, problem.node_parent[current], current)
            current_depth = np.where(up, current_depth - 1, current_depth)
        # Per depth: the connectors below some node of that depth, that node, and which kinds of
        # limit exist there at all (most depths have only power limits, or none).
        self.members = [np.flatnonzero(a >= 0) for a in self.ancestor_at]
        self.member_nodes = [a[m] for a, m in zip(self.ancestor_at, self.members)]
        finite_w = np.isfinite(problem.node_limit_w).any(axis=1)
        finite_a = np.isfinite(problem.node_limit_a).any(axis=1)
        self.has_w = [bool(finite_w[depth == d].any()) for d in range(self.max_depth + 1)]
        self.has_a = [bool(finite_a[depth == d].any()) for d in range(self.max_depth + 1)]
        self.any_a = bool(finite_a.any())
        # Each car draws amps_max per W from one phase (single-phase: column = its phase) or
        # from all three (column 3, the smallest of the three limits): _clip_to_path_room. A
        # row given per phase (Problem.phase_a_per_w, uneven) is clipped so too: its largest
        # current against the smallest limit, on the safe side.
        self.amps_max = problem.amps_per_w.max(axis=1)
        self.phase_col = np.where(problem.phases == 1, problem.phase, N_PHASES)
        # What a car draws from each resource of a node per W: power, then L1..L3 current.
        self.coef = np.column_stack([np.ones(n), problem.amps_per_w])


_TREES: "weakref.WeakKeyDictionary[Problem, _Tree]" = weakref.WeakKeyDictionary()


def _tree(problem: Problem) -> _Tree:
    """The problem's _Tree, built once (every baseline and the top-up use it; read-only)."""
    tree = _TREES.get(problem)
    if tree is None:
        tree = _TREES[problem] = _Tree(problem)
    return tree


class _GroupPrefix:
    """Sums over earlier members of the same group: for each row i, the sum of values[j] over
    rows j in i's group with a smaller rank (ranks unique), column by column. The sort is done
    once, for repeated sums."""

    def __init__(self, group: np.ndarray, rank: np.ndarray) -> None:
        # One sort by (group, rank): the keys are unique, so any sort gives the same order.
        self.order = np.argsort(group.astype(np.int64) * (int(rank.max()) + 1) + rank)
        g = group[self.order]
        first = np.empty(g.shape[0], dtype=bool)
        first[0] = True
        np.not_equal(g[1:], g[:-1], out=first[1:])
        # Each entry's group start: the last position (at or before it) where the group changes.
        self.start = np.maximum.accumulate(np.where(first, np.arange(g.shape[0]), 0))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        v = values[self.order]
        cs = np.cumsum(v, axis=0) - v
        out = np.empty_like(values)
        out[self.order] = cs - cs[self.start]
        return out


_MAX_CUT_ROUNDS = 8  # vectorised rounds before cutting car by car (see _cut_in_order)


def _cut_in_order(want_w: np.ndarray, coef: np.ndarray | None, group: np.ndarray,
                  rank: np.ndarray, room: np.ndarray, min_w: np.ndarray) -> np.ndarray:
    """(k,) power of k cars served one after another (by rank) within each group (node).

    Every car draws coef[i, r] per W from resource r of its node (power: 1; a phase current:
    A/W), whose room is room[i, r] (coef None: power alone, room (k,)). Each car in turn gets
    what it wants up to what is left of every resource it draws from, or 0 when that is below
    its minimum; a car paused so holds no room, and all resources are cut at once (cutting power
    first gave room to a car that a phase then paused, and nobody else got it).

    This is a sequential rule; vectorised, it is the fixed point of "each car gets
    f(room - what the cars before it got)". Iterating from "everyone gets what they want", the
    first r cars of every group are exact after r rounds, and a fixed point is the sequential
    answer. Usually two or three rounds do; after _MAX_CUT_ROUNDS the rest goes car by car.
    """
    prefix = _GroupPrefix(group, rank)
    if coef is None:
        # Power alone: after one round against what the cars before asked for, a car short of
        # its request is either cut to what was left (nothing is left for those after it, as the
        # round assumed) or paused with nothing left; only a car paused while room was left
        # makes the round wrong for the cars after it.
        cap_w = np.maximum(room - prefix(want_w), 0.0)
        got = np.minimum(want_w, cap_w)
        got = np.where(got >= min_w, got, 0.0)
        if not ((got == 0.0) & (cap_w > 0.0)).any():
            return got
        # That was the first round of the loop below: go on from it.
        coef, room = np.ones((want_w.shape[0], 1)), room[:, None]
    else:
        got = want_w
    for _ in range(_MAX_CUT_ROUNDS):
        left = np.maximum(room - prefix(got[:, None] * coef), 0.0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            cap_w = np.where(coef > 0, left / coef, np.inf).min(axis=1)
        new = np.minimum(want_w, cap_w)
        new = np.where(new >= min_w, new, 0.0)
        # Sums of other groups' changed values may move the last bits of a prefix.
        if np.all(np.abs(new - got) <= 1e-12 * (np.abs(got) + 1.0)):
            return new
        got = new
    return _cut_one_by_one(want_w, coef, group, prefix.order, room, min_w)


def _cut_one_by_one(want_w, coef, group, order, room, min_w) -> np.ndarray:
    """The sequential rule of _cut_in_order, car by car in `order` (sorted by group, rank).

    On Python floats, not numpy scalars: a re-plan's equal_share reached this fallback for
    12 798 cars on the phase family at N = 1 000, and numpy's per-call overhead made it 90 of the
    guard's 130 ms (benchmarks/README.md, s33-warm). The same IEEE operations in the same order
    as the numpy version it replaced (`np.min(..., initial=inf)` and `np.maximum(.., 0.0)`
    included, down to which of two equal zeros is kept), so the same bits:
    tests/test_optimizer_baselines_cut.py compares them."""
    got = np.zeros_like(want_w)
    want, coefs, groups = want_w.tolist(), coef.tolist(), group.tolist()
    rooms, mins = room.astype(float).tolist(), min_w.tolist()
    inf = float("inf")
    current, left = None, None
    for j in order.tolist():
        if groups[j] != current:
            current, left = groups[j], rooms[j]
        row = coefs[j]
        cap = inf
        for r, c in enumerate(row):
            if c > 0:
                q = left[r] / c
                # np.minimum's rule, as its reduction applies it: keep cap only when smaller
                # (or NaN), else take q
                if not (cap < q or cap != cap):
                    cap = q
        w = want[j]
        give = cap if cap < w else w          # builtins.min(want, cap)
        if give >= mins[j]:
            got[j] = give
            # np.maximum(left - give * coef, 0.0): the difference where it is larger or NaN
            left = [v if (v > 0.0 or v != v) else 0.0
                    for v in (x - give * c for x, c in zip(left, row))]
    return got


def serve_in_order(problem: Problem, t: int, desired_w: np.ndarray, order: np.ndarray,
                   tree: _Tree | None = None, used_w: np.ndarray | None = None,
                   min_w: np.ndarray | None = None) -> np.ndarray:
    """(N,) power in slot t: cars served in `order`, each up to what every node above it has left.

    Deepest nodes first: at each node the cars below it are cut in order against its limit
    (power and each phase current) minus what `used_w` (N,) already draws there, so a larger
    node higher up only trims what its subtrees passed up. Each cut only lowers power, so every
    node stays within its limit. A car cut below its minimum is paused (0) and holds no
    headroom: the cars after it may use it (`_cut_in_order`). `min_w` (N,) overrides the
    minimum each car must get to run (a car already running under `used_w` needs no minimum for
    more).
    """
    tree = tree or _tree(problem)
    # The margin is relative to the whole limit, so loads re-summed with used_w stay under it too.
    limit_w = problem.node_limit_w[:, t] * (1.0 - _EPS)
    limits_all = limit_a = None
    if tree.any_a:  # (M, 1 + 3): power, then L1..L3 current (one limit for every phase)
        limits_all = np.empty((limit_w.shape[0], 1 + N_PHASES))
        limits_all[:, 0] = limit_w
        limits_all[:, 1:] = problem.node_limit_a[:, t, None] * (1.0 - _EPS)
        if used_w is not None:  # one product for power and the three phases
            used = problem.node_connector @ (tree.coef * used_w[:, None])
            limits_all = np.maximum(limits_all - used, 0.0)
        limit_w, limit_a = limits_all[:, 0], limits_all[:, 1:]
    elif used_w is not None:
        limit_w = np.maximum(limit_w - problem.node_connector @ used_w, 0.0)
    min_w = problem.min_power_w if min_w is None else min_w
    power = np.where(desired_w >= min_w, desired_w, 0.0)
    # order may list only the cars that ask for power; no other car's rank is read.
    rank = np.empty(power.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    m = limit_w.shape[0]
    # Only cars that ask for power take part: the others add exact zeros to every load and are
    # never cut, so leaving them out changes no sum (a third of the cars are present at a time).
    active = (power > 0).nonzero()[0]  # = np.flatnonzero, without its wrapper's cost
    if used_w is not None:  # without used_w, _upper_by_slot already holds each car to its path
        _clip_to_path_room(problem, tree, power, active, limit_w, limit_a, min_w)
        active = active[power[active] > 0]
    for d in range(tree.max_depth, -1, -1):
        if not (tree.has_w[d] or tree.has_a[d]):
            continue
        above = tree.ancestor_at[d][active]
        below = above >= 0
        members, nodes = active[below], above[below]
        if members.size == 0:
            continue
        asked = power[members]
        if not tree.has_a[d]:  # power limits only (most depths): one resource, no coefficients
            over = np.bincount(nodes, weights=asked, minlength=m) > limit_w
            if not over.any():
                continue
            cut = (over[nodes] & (asked > 0)).nonzero()[0]
            idx, idx_nodes = members[cut], nodes[cut]
            power[idx] = _cut_in_order(asked[cut], None, idx_nodes, rank[idx],
                                       limit_w[idx_nodes], min_w[idx])
            continue
        # The resources of this depth's nodes: power (if limited here), and each phase's current.
        first = 0 if tree.has_w[d] else 1
        limits = limits_all[:, first:]
        n_res = limits.shape[1]
        coef = tree.coef[members, first:]
        load = np.bincount((nodes[:, None] * n_res + np.arange(n_res)).ravel(),
                           weights=(asked[:, None] * coef).ravel(), minlength=m * n_res)
        over = (load.reshape(m, n_res) > limits).any(axis=1)
        # Only the cars under an overloaded node are cut; everyone else keeps what they asked.
        cut = (over[nodes] & (asked > 0)).nonzero()[0]
        if cut.size == 0:
            continue
        idx, idx_nodes = members[cut], nodes[cut]
        power[idx] = _cut_in_order(asked[cut], coef[cut], idx_nodes, rank[idx],
                                   limits[idx_nodes], min_w[idx])
    return power


def _clip_to_path_room(problem: Problem, tree: _Tree, power: np.ndarray, active: np.ndarray,
                       limit_w: np.ndarray, limit_a: np.ndarray, min_w: np.ndarray) -> None:
    """Lower power[active] in place to what each car alone could draw under every node above it
    (0 when that is below its minimum). Without it, a car that a full phase at the root pauses
    would first take room at its feeder, which the cars after it there then miss."""
    cap = power[active]
    # Index -1 (no node of that depth above the car) reads the appended unlimited entry.
    limit_w = np.append(limit_w, np.inf)
    if tree.any_a:
        ext = np.full((limit_a.shape[0] + 1, N_PHASES + 1), np.inf)
        ext[:-1, :N_PHASES] = limit_a
        ext[:-1, N_PHASES] = limit_a.min(axis=1)  # column 3: all phases
        limit_a = ext
        col, per_a = tree.phase_col[active], 1.0 / tree.amps_max[active]
    for d in range(tree.max_depth + 1):
        if not (tree.has_w[d] or tree.has_a[d]):
            continue
        node = tree.ancestor_at[d][active]
        if tree.has_w[d]:
            np.minimum(cap, limit_w[node], out=cap)
        if tree.has_a[d]:
            np.minimum(cap, limit_a[node, col] * per_a, out=cap)
    power[active] = np.where(cap >= min_w[active], cap, 0.0)


def fit_under_limits(problem: Problem, t: int, desired_w: np.ndarray,
                     tree: _Tree | None = None) -> np.ndarray:
    """(N,) desired_w scaled so no node exceeds its limits in slot t.

    Bottom-up: the deepest nodes first, each scaling the cars below it by min(1, limit / load)
    over power and phases, where the load is what its subtrees pass up *after* their own cuts.
    A node higher up then scales only what is left, so no car is cut twice for the same watts
    (scaling every node against the cars' raw requests left a root with room while pods were
    cut). Each cut only lowers loads, so every node stays within its limit. Under power limits a
    car held below what it asked for has a full node above it (its last cut, to within _EPS);
    cutting phase after phase can leave room on an earlier phase, which equal_share hands out.
    """
    tree = tree or _tree(problem)
    power = np.array(desired_w, dtype=float)
    amps = problem.amps_per_w
    m = problem.n_nodes
    limit_w = problem.node_limit_w[:, t]
    limit_a = problem.node_limit_a[:, t]
    for d in range(tree.max_depth, -1, -1):
        if not (tree.has_w[d] or tree.has_a[d]):
            continue
        members, nodes = tree.members[d], tree.member_nodes[d]
        if tree.has_w[d]:
            load = np.bincount(nodes, weights=power[members], minlength=m)
            over = load > limit_w
            if over.any():
                power[members] *= _factor(over, load, limit_w)[nodes]
        # An infinite current limit never scales anything: phase currents only if one exists.
        # An overloaded phase scales only the cars that draw from it (a car on L2 is not cut
        # for L1); the phases go one after another on the loads the previous cut left.
        for ph in (range(N_PHASES) if tree.has_a[d] else ()):
            per_w = amps[members, ph]
            load = np.bincount(nodes, weights=power[members] * per_w, minlength=m)
            over = load > limit_a
            if over.any():
                power[members] *= np.where(per_w > 0, _factor(over, load, limit_a)[nodes], 1.0)
    return power


def _factor(over: np.ndarray, load: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Per node: 1 where the load fits, else limit / load less the _EPS margin."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(over, limit / load * (1.0 - _EPS), 1.0)


def _wanted_w(problem: Problem, t: int, remaining_wh: np.ndarray,
              upper_t: np.ndarray | None = None) -> np.ndarray:
    """(N,) what each car can take in slot t: its bound, and no more than what is left to deliver.

    upper_t: problem.upper_w[:, t] when the caller has it contiguous already."""
    upper_t = problem.upper_w[:, t] if upper_t is None else upper_t
    # The margin keeps the re-summed delivered energy from passing the request by a rounding error.
    want = np.minimum(upper_t, remaining_wh / problem.wh_per_w[t] * (1.0 - 1e-12))
    return np.where(want >= problem.min_power_w, want, 0.0)


_UPPER_BY_SLOT: "weakref.WeakKeyDictionary[Problem, np.ndarray]" = weakref.WeakKeyDictionary()


def _upper_by_slot(problem: Problem) -> np.ndarray:
    """(T, N) problem.upper_w capped by what each car alone may draw under the nodes above it
    (`lp.tight_upper_w`), contiguous by slot, made once per problem (read-only). With that cap
    serve_in_order needs no clip of its own when nothing else is drawing (`_clip_to_path_room`)."""
    upper = _UPPER_BY_SLOT.get(problem)
    if upper is None:
        upper = np.ascontiguousarray(tight_upper_w(problem, problem.upper_w).T)
        upper.setflags(write=False)
        _UPPER_BY_SLOT[problem] = upper
    return upper


def _run(problem: Problem, allocate) -> np.ndarray:
    n, t_count = problem.n_connectors, problem.n_slots
    # Slot by slot on (T, N) copies: a column of a C-ordered (N, T) array is a strided gather.
    power = np.zeros((t_count, n))
    upper = _upper_by_slot(problem)
    remaining = problem.energy_wh.astype(float).copy()
    for t in range(t_count):
        want = _wanted_w(problem, t, remaining, upper[t])
        if not want.any():
            continue
        got = np.minimum(allocate(t, want, remaining), want)
        power[t] = got
        remaining = np.maximum(remaining - got * problem.wh_per_w[t], 0.0)
    return np.ascontiguousarray(power.T)


def uncontrolled(problem: Problem) -> np.ndarray:
    """(N, T) everyone at maximum in their window until the request is met (ignores the tree)."""
    upper_wh = problem.upper_w * problem.wh_per_w[None, :]
    before = np.cumsum(upper_wh, axis=1) - upper_wh
    give_wh = np.clip(problem.energy_wh[:, None] - before, 0.0, upper_wh)
    return give_wh / problem.wh_per_w[None, :]


def _priority_order(problem: Problem, key: np.ndarray) -> np.ndarray:
    """Connector indices, highest weight first, then smallest key, then index."""
    weight = quantised_weight(problem.weight)
    # = np.lexsort((index, key, -weight)): stable sorts keep the index order within ties.
    by_key = np.argsort(key, kind="stable")
    return by_key[np.argsort(-weight[by_key], kind="stable")]


def edf(problem: Problem) -> np.ndarray:
    """(N, T) earliest deadline first, respecting every limit."""
    tree = _tree(problem)
    order = _priority_order(problem, _deadline_key(problem))
    return _run(problem, lambda t, want, remaining: serve_in_order(problem, t, want, order, tree))


def llf(problem: Problem) -> np.ndarray:
    """(N, T) least laxity first, respecting every limit."""
    tree = _tree(problem)

    weight = quantised_weight(problem.weight)

    def allocate(t, want, remaining):
        # Only cars that want power can be cut, so only their order matters: sorting them alone
        # gives them the same relative order as sorting everyone (serve_in_order reads no rank
        # of a car that asks for nothing).
        asking = (want > 0).nonzero()[0]
        full_wh = np.maximum(problem.max_power_w[asking, t], 1e-9) * problem.wh_per_w[t]
        laxity = (problem.departure_slot[asking] - t) - remaining[asking] / full_wh
        by_key = np.argsort(laxity, kind="stable")
        order = asking[by_key[np.argsort(-weight[asking][by_key], kind="stable")]]
        return serve_in_order(problem, t, want, order, tree)

    return _run(problem, allocate)


def equal_share(problem: Problem) -> np.ndarray:
    """(N, T) requests scaled equally under each overloaded node; respects every limit."""
    tree = _tree(problem)
    order = _priority_order(problem, np.zeros(problem.n_connectors))

    def allocate(t, want, remaining):
        got = fit_under_limits(problem, t, want, tree)
        paused = (got > 0) & (got < problem.min_power_w)
        if not (paused.any() or tree.any_a):
            return got  # power limits only: every car below its request has a full node above
        got = np.where(paused, 0.0, got)
        # Pausing freed room, and a phase cut after another can leave the first phase with room
        # again: offer it, in priority order, to every car below its request (a paused car
        # needs its minimum, a running one takes any amount). A car that gets more can leave
        # room to an earlier one at another node, so repeat while anything moves.
        for _ in range(_MAX_RETRIES):
            need_min = np.where(got > 0, 0.0, problem.min_power_w)
            more = np.maximum(want - got, 0.0)
            more = np.where(more >= np.maximum(need_min, _RETRY_W), more, 0.0)
            if not more.any():
                break
            extra = serve_in_order(problem, t, more, order, tree, used_w=got, min_w=need_min)
            if not (extra > _RETRY_W).any():
                break
            got = got + extra
        return got

    return _run(problem, allocate)


def _deadline_key(problem: Problem) -> np.ndarray:
    """EDF's key: the departure slot, and on a tie (same slot) a car the previous plan ran
    (`Problem.previous_w` > 0 in a kept slot) first, so a tie does not pause it (issue 9)."""
    key = problem.departure_slot.astype(float)
    if problem.previous_w is not None:
        ran = np.nan_to_num(problem.previous_w, nan=0.0).max(axis=1) > 0
        key = key + np.where(ran, 0.0, 0.5)  # departure slots are integers: only ties move
    return key


def top_up(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    """(N, T) power_w plus whatever more fits, slot by slot, in priority order (EDF within weight).

    Used after rounding: pausing a below-minimum entry frees headroom the re-solve may not have
    handed out. Only adds power (so energy and the objective only grow) and keeps every limit and
    the minimum-rate rule: a running car may take any amount more, a paused one at least its
    minimum.
    """
    tree = _tree(problem)
    order = _priority_order(problem, _deadline_key(problem))
    power_w = np.asarray(power_w, dtype=float)
    wh = problem.wh_per_w
    remaining = np.maximum(problem.energy_wh - np.einsum("it,t->i", power_w, wh), 0.0)
    # Slot by slot on (T, N) copies (a column of a C-ordered (N, T) array is a strided gather).
    power_t = np.ascontiguousarray(power_w.T)
    # A slot's extra energy is taken from what is left after every *other* slot's allocation,
    # so slots are visited in order and the remainder updated as we go.
    for t in range(problem.n_slots):
        current = power_t[t]
        extra = serve_more(problem, t, current, remaining / wh[t] * (1.0 - 1e-12), order, tree)
        if extra is None:
            continue
        power_t[t] = current + extra
        remaining = np.maximum(remaining - extra * wh[t], 0.0)
    return np.ascontiguousarray(power_t.T)


def serve_more(problem: Problem, t: int, current_w: np.ndarray, can_take_w: np.ndarray,
               order: np.ndarray, tree: _Tree | None = None, *, zero_w: float = 0.0
               ) -> np.ndarray | None:
    """(N,) what more each car gets in slot t on top of `current_w` (N,), served in `order`:
    up to its bound under the nodes above it (`_upper_by_slot`) and `can_take_w` (N,), under
    every node limit with what `current_w` draws there. A running car (above `zero_w`) may take
    any amount more, a paused one at least its minimum. None when nobody can take anything.
    The step `top_up` and `forward.pull_forward` share: they differ in what a car can take."""
    room_w = np.minimum(_upper_by_slot(problem)[t] - current_w, can_take_w)
    need_min = np.where(current_w > zero_w, 0.0, problem.min_power_w)
    room_w = np.where((room_w > zero_w) & (room_w >= need_min), room_w, 0.0)
    if not room_w.any():
        return None
    return serve_in_order(problem, t, room_w, order, tree, used_w=current_w, min_w=need_min)
