"""The compiled inner loop of the kinetic Monte Carlo (numba).

Rejection-free (BKL / n-fold way) selection over per-site total rates held in a binary
sum tree; each event touches only the sites whose rates can depend on the changed sites
(the offsets in ``affect``), so an event costs O(log N + local work). The rate of a move
comes from a catalogue (an open-addressing table: environment key → rate); a key not in
it stops the loop so that Python can ask the barrier model for every missing key at once and resume.

Random numbers: xoshiro256** with its state in a 4-word array, so a run is reproducible
and its state is checkpointed with the lattice.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from nnp_lab.apps.crystal_growth.lattice import KEY_SHIFT

MISSING = -1.0


# ---------------------------------------------------------------------- random numbers
@njit(cache=True)
def _rotl(x: np.uint64, k: int) -> np.uint64:
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True)
def next_uniform(state: np.ndarray) -> float:
    """xoshiro256**: a float in (0, 1)."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return ((result >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


def seed_state(seed: int) -> np.ndarray:
    """xoshiro state from an integer seed (splitmix64, as its authors recommend)."""
    out = np.zeros(4, dtype=np.uint64)
    x = seed & 0xFFFFFFFFFFFFFFFF
    for k in range(4):
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        out[k] = z ^ (z >> 31)
    return out


# ---------------------------------------------------------------------- rate table
# Open addressing (linear probing) in two arrays: keys (−1 = empty) and rates. Faster
# than a numba typed dict in the inner loop; Python grows it below half load.
@njit(cache=True)
def _slot(hkeys: np.ndarray, key: np.int64) -> int:
    mask = np.int64(hkeys.shape[0] - 1)
    h = (key * np.int64(-7046029254386353131)) >> np.int64(20)  # Fibonacci hashing, wraps
    k = h & mask
    while hkeys[k] != key and hkeys[k] != -1:
        k = (k + 1) & mask
    return k


@njit(cache=True)
def table_get(hkeys: np.ndarray, hvals: np.ndarray, key: np.int64) -> float:
    """Rate of ``key``, or MISSING."""
    k = _slot(hkeys, key)
    return hvals[k] if hkeys[k] == key else MISSING


@njit(cache=True)
def table_put(hkeys: np.ndarray, hvals: np.ndarray, keys: np.ndarray, vals: np.ndarray) -> None:
    for n in range(keys.shape[0]):
        k = _slot(hkeys, keys[n])
        hkeys[k] = keys[n]
        hvals[k] = vals[n]


# ---------------------------------------------------------------------- sum tree
@njit(cache=True)
def tree_set(tree: np.ndarray, leaf0: int, p: int, value: float) -> None:
    k = leaf0 + p
    delta = value - tree[k]
    if delta == 0.0:
        return
    while k >= 1:
        tree[k] += delta
        k //= 2


@njit(cache=True)
def tree_find(tree: np.ndarray, leaf0: int, u: float) -> int:
    k = 1
    while k < leaf0:
        left = tree[2 * k]
        if u < left:
            k = 2 * k
        else:
            u -= left
            k = 2 * k + 1
    return k - leaf0


@njit(cache=True)
def tree_rebuild(tree: np.ndarray, leaf0: int) -> None:
    for k in range(leaf0 - 1, 0, -1):
        tree[k] = tree[2 * k] + tree[2 * k + 1]


# ---------------------------------------------------------------------- lattice access
@njit(cache=True)
def _wrap(i: int, n: int) -> int:
    """``i mod n`` for ``−n ≤ i < 2n`` without a division (offsets are small)."""
    if i < 0:
        return i + n
    if i >= n:
        return i - n
    return i


@njit(cache=True)
def _site(z: int, i: int, j: int, n: int) -> int:
    return (z * n + _wrap(i, n)) * n + _wrap(j, n)


@njit(cache=True)
def occupied(occ: np.ndarray, z: int, i: int, j: int, n: int, nz: int) -> int:
    """Occupancy with the boundary rules: below the lattice full, above it empty."""
    if z < 0:
        return 1
    if z >= nz:
        return 0
    return occ[_site(z, i, j, n)]


@njit(cache=True)
def supported(occ, z, i, j, n, nz, down) -> bool:
    for k in range(down.shape[0]):
        if occupied(occ, z + down[k, 0], i + down[k, 1], j + down[k, 2], n, nz) == 0:
            return False
    return True


@njit(cache=True)
def mobile(occ, z, i, j, n, nz, up) -> bool:
    """An atom above the substrate that nothing rests on."""
    if z < 1 or occ[_site(z, i, j, n)] == 0:
        return False
    for k in range(up.shape[0]):
        if occupied(occ, z + up[k, 0], i + up[k, 1], j + up[k, 2], n, nz) == 1:
            return False
    return True


@njit(cache=True)
def move_key(occ, z, i, j, n, nz, m, env, env_n) -> np.int64:
    bits = np.int64(0)
    for e in range(env_n[m]):
        if occupied(occ, z + env[m, e, 0], i + env[m, e, 1], j + env[m, e, 2], n, nz):
            bits |= np.int64(1) << np.int64(e)
    return (bits << np.int64(KEY_SHIFT)) | np.int64(m)


@njit(cache=True)
def valid_target(occ, z, i, j, n, nz, m, target, down) -> bool:
    tz, ti, tj = z + target[m, 0], i + target[m, 1], j + target[m, 2]
    if tz < 1 or tz >= nz - 1:
        return False
    if occupied(occ, tz, ti, tj, n, nz):
        return False
    return supported(occ, tz, ti, tj, n, nz, down)


@njit(cache=True)
def site_rate(occ, p, n, nz, target, env, env_n, down, up, hkeys, hvals, pending, n_pending):
    """Total rate of the atom at site ``p`` (0 if none or immobile); unknown keys are
    appended to ``pending`` and make the rate MISSING."""
    z = p // (n * n)
    i = (p // n) % n
    j = p % n
    if not mobile(occ, z, i, j, n, nz, up):
        return 0.0, n_pending
    total = 0.0
    missing = False
    # (no target is supported by the moving atom itself: see lattice.Surface.moves)
    for m in range(target.shape[0]):
        if not valid_target(occ, z, i, j, n, nz, m, target, down):
            continue
        key = move_key(occ, z, i, j, n, nz, m, env, env_n)
        r = table_get(hkeys, hvals, key)
        if r >= 0.0:
            total += r
        else:
            missing = True
            if n_pending < pending.shape[0]:
                pending[n_pending] = key
                n_pending += 1
    if missing:
        return MISSING, n_pending
    return total, n_pending


@njit(cache=True)
def pick_move(occ, p, n, nz, target, env, env_n, down, hkeys, hvals, u):
    """Choose a move of the atom at ``p`` with probability ∝ rate; ``u`` ∈ (0, 1)."""
    z = p // (n * n)
    i = (p // n) % n
    j = p % n
    rates = np.zeros(target.shape[0])
    total = 0.0
    for m in range(target.shape[0]):
        if valid_target(occ, z, i, j, n, nz, m, target, down):
            rates[m] = table_get(hkeys, hvals, move_key(occ, z, i, j, n, nz, m, env, env_n))
            total += rates[m]
    x = u * total
    last = -1
    for m in range(target.shape[0]):
        if rates[m] > 0.0:
            last = m
            if x < rates[m]:
                return m
            x -= rates[m]
    return last


@njit(cache=True)
def refresh(
    occ,
    sites,
    n_sites,
    rate,
    tree,
    leaf0,
    n,
    nz,
    target,
    env,
    env_n,
    down,
    up,
    hkeys,
    hvals,
    pending,
    n_pending,
):
    """Recompute the rates of ``sites[:n_sites]``; returns the new pending count."""
    for k in range(n_sites):
        p = sites[k]
        r, n_pending = site_rate(
            occ, p, n, nz, target, env, env_n, down, up, hkeys, hvals, pending, n_pending
        )
        rate[p] = r
        tree_set(tree, leaf0, p, r if r > 0.0 else 0.0)
    return n_pending


@njit(cache=True)
def _touch(occ, rate, q, n, affect, dirty, n_dirty, flag):
    """Add every site whose rate can depend on site ``q`` to ``dirty`` (atoms, and empty
    sites whose old rate is not yet zero)."""
    z = q // (n * n)
    i = (q // n) % n
    j = q % n
    nz = occ.shape[0] // (n * n)
    for k in range(affect.shape[0]):
        zz = z - affect[k, 0]
        if zz < 1 or zz >= nz:
            continue
        p = _site(zz, i - affect[k, 1], j - affect[k, 2], n)
        if occ[p] == 0 and rate[p] == 0.0:
            continue
        if flag[p] == 0:
            flag[p] = 1
            dirty[n_dirty] = p
            n_dirty += 1
    return n_dirty


@njit(cache=True)
def deposit_site(occ, n, nz, down, layer_count, rng) -> int:
    """Landing site of an atom arriving at a random in-plane position: it starts above
    the film and funnels down through missing supports (downward funnelling)."""
    i = int(next_uniform(rng) * n)
    j = int(next_uniform(rng) * n)
    z = 1
    for zz in range(nz - 1, 0, -1):
        if layer_count[zz] > 0:
            z = zz + 1
            break
    if z >= nz:
        z = nz - 1
    while True:
        nmiss = 0
        for k in range(down.shape[0]):
            if occupied(occ, z + down[k, 0], i + down[k, 1], j + down[k, 2], n, nz) == 0:
                nmiss += 1
        if nmiss == 0:
            return _site(z, i, j, n)
        pick = int(next_uniform(rng) * nmiss)
        for k in range(down.shape[0]):
            if occupied(occ, z + down[k, 0], i + down[k, 1], j + down[k, 2], n, nz) == 0:
                if pick == 0:
                    z, i, j = z + down[k, 0], _wrap(i + down[k, 1], n), _wrap(j + down[k, 2], n)
                    break
                pick -= 1


@njit(cache=True)
def run(
    occ,
    rate,
    tree,
    leaf0,
    n,
    nz,
    target,
    env,
    env_n,
    down,
    up,
    affect,
    hkeys,
    hvals,
    deposition_rate,
    rng,
    clock,
    counters,
    max_events,
    t_stop,
    max_deposits,
    pending,
    dirty,
    flag,
    kinds,
    kind_counts,
    layer_count,
):
    """Run events until ``max_events``, time ``t_stop``, ``max_deposits`` deposited atoms,
    or a missing catalogue key. ``clock[0]`` is the time, ``counters`` = [events,
    deposits]. Returns (status, n_pending, n_dirty): status 0 = stopped normally,
    1 = keys missing (``pending[:n_pending]``; ``dirty[:n_dirty]`` to refresh after they
    are added), 2 = the film reached the top of the lattice, 3 = nothing can happen."""
    n_pending = 0
    events = 0
    while events < max_events and clock[0] < t_stop and counters[1] < max_deposits:
        total = tree[1] + deposition_rate
        if total <= 0.0:
            return 3, 0, 0
        u = next_uniform(rng) * total
        n_dirty = 0
        if u < deposition_rate:
            q = deposit_site(occ, n, nz, down, layer_count, rng)
            if q // (n * n) >= nz - 2:
                return 2, 0, 0
            occ[q] = 1
            layer_count[q // (n * n)] += 1
            n_dirty = _touch(occ, rate, q, n, affect, dirty, n_dirty, flag)
            counters[1] += 1
            kind_counts[kind_counts.shape[0] - 1] += 1
        else:
            p = tree_find(tree, leaf0, u - deposition_rate)
            if rate[p] <= 0.0:  # rounding at the end of the tree
                tree_rebuild(tree, leaf0)
                continue
            m = pick_move(occ, p, n, nz, target, env, env_n, down, hkeys, hvals, next_uniform(rng))
            z = p // (n * n)
            i = (p // n) % n
            j = p % n
            q = _site(z + target[m, 0], i + target[m, 1], j + target[m, 2], n)
            occ[p] = 0
            occ[q] = 1
            layer_count[z] -= 1
            layer_count[q // (n * n)] += 1
            n_dirty = _touch(occ, rate, p, n, affect, dirty, n_dirty, flag)
            n_dirty = _touch(occ, rate, q, n, affect, dirty, n_dirty, flag)
            kind_counts[kinds[m]] += 1
        clock[0] += -np.log(next_uniform(rng)) / total
        events += 1
        counters[0] += 1
        if counters[0] % 65536 == 0:  # sum-tree rounding drift
            tree_rebuild(tree, leaf0)
        n_pending = refresh(
            occ,
            dirty,
            n_dirty,
            rate,
            tree,
            leaf0,
            n,
            nz,
            target,
            env,
            env_n,
            down,
            up,
            hkeys,
            hvals,
            pending,
            n_pending,
        )
        for k in range(n_dirty):
            flag[dirty[k]] = 0
        if n_pending > 0:
            return 1, n_pending, n_dirty
    return 0, 0, 0
