"""The fused C++/OpenMP descriptor backend (``cpu``) against the torch reference."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from nnp_lab.data.batch import Batch
from nnp_lab.kernels.aev_torch import aev_torch
from nnp_lab.kernels.layout import PairLayout, pair_layout
from nnp_lab.kernels.params import AEVParams
from nnp_lab.models.descriptor import DescriptorConfig

if shutil.which(os.environ.get("CXX", "c++")) is None:
    pytest.skip("no C++ compiler: the cpu backend cannot be built", allow_module_level=True)

from nnp_lab.kernels.aev_cpu import aev_cpu, load_extension

SPECIES = {"H": 0, "C": 1, "N": 2, "O": 3}
ANI1X = DescriptorConfig.preset("ani1x").params(4)
# Tolerances. float64: both implementations evaluate the same formula in double, so only
# rounding order differs (observed ≲ 1e-13 relative); 1e-10 relative is the target, with an
# absolute floor far below any feature that matters. float32: the target is 1e-5 relative;
# features and gradients are sums of terms each carrying float32 rounding of trig/exp/power
# (amplified up to ζ = 32× by the angular power), so small entries next to large ones are
# compared against 1e-5 of the largest entry of the tensor (its float32 resolution is ~1e-7).
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(scope="module", autouse=True)
def _built_extension():
    load_extension()  # first build takes ~30 s; later runs load the cached module


def _random_molecule(rng: np.random.Generator, n: int, symbols: str = "HCNO") -> Atoms:
    """``n`` atoms at random in a cube of about 10 Å³ per atom, at least 0.8 Å apart."""
    size = (10.0 * n) ** (1 / 3)
    pos = np.zeros((0, 3))
    while len(pos) < n:
        x = rng.uniform(0, size, 3)
        if len(pos) == 0 or np.linalg.norm(pos - x, axis=1).min() > 0.8:
            pos = np.vstack([pos, x])
    return Atoms(rng.choice(list(symbols), size=n), positions=pos)


def _water_box(n_side: int, seed: int) -> Atoms:
    """Water molecules on a jittered 3.1 Å grid (about liquid density), periodic."""
    rng = np.random.default_rng(seed)
    w = molecule("H2O")
    atoms = Atoms(cell=np.eye(3) * 3.1 * n_side, pbc=True)
    for idx in np.ndindex(n_side, n_side, n_side):
        m = w.copy()
        m.rotate(rng.uniform(0, 360), rng.normal(size=3))
        m.translate(3.1 * np.array(idx) + rng.uniform(-0.2, 0.2, 3))
        atoms += m
    return atoms


def _layout(
    atoms: Atoms, params: AEVParams, dtype: torch.dtype, margin: float = 0.0
) -> tuple[torch.Tensor, PairLayout]:
    """Sorted pair vectors and layout; ``margin`` widens the layout's cutoffs so pairs at
    or beyond the descriptor cutoffs reach the kernels (which must then drop them)."""
    b = Batch.from_atoms(atoms, dtype=torch.float64)
    p = b.neighbors(params.radial_cutoff + margin)
    vec = (
        b.positions[p.j]
        - b.positions[p.i]
        + torch.einsum("pk,pkx->px", p.shifts, b.cell[b.batch[p.i]])
    )
    species = torch.tensor([SPECIES[s] for s in atoms.get_chemical_symbols()], dtype=torch.long)
    layout = pair_layout(
        species, vec, p.i, p.j, params.radial_cutoff + margin, params.angular_cutoff + margin
    )
    return vec[layout.order].to(dtype).contiguous(), layout


def _value_and_grad(fn, vectors, layout, params, grad_out):
    v = vectors.detach().clone().requires_grad_(True)
    out = fn(v, layout, params)
    (g,) = torch.autograd.grad(out, v, grad_out)
    return out.detach(), g


def _assert_matches(vectors, layout, params, seed=0):
    """Values and first derivatives (random cotangent) of cpu vs torch in vectors' dtype."""
    dtype = vectors.dtype
    gen = torch.Generator().manual_seed(seed)
    grad_out = torch.randn((layout.num_atoms, params.num_features), generator=gen, dtype=dtype)
    ours, g_ours = _value_and_grad(aev_cpu, vectors, layout, params, grad_out)
    ref, g_ref = _value_and_grad(aev_torch, vectors, layout, params, grad_out)
    assert ours.shape == ref.shape == (layout.num_atoms, params.num_features)
    assert ours.dtype == dtype and g_ours.dtype == dtype
    rtol = RTOL[dtype]
    for a, b in ((ours, ref), (g_ours, g_ref)):
        scale = float(b.abs().max()) if b.numel() else 0.0
        atol = (1e-3 if dtype == torch.float64 else 1.0) * rtol * max(scale, 1e-3)
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    return ours, g_ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_on_random_molecules(dtype):
    rng = np.random.default_rng(0)
    for n in (2, 3, 8, 20, 40):
        vectors, layout = _layout(_random_molecule(rng, n), ANI1X, dtype)
        assert layout.num_triples() > 0 or n < 3
        _assert_matches(vectors, layout, ANI1X, seed=n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_on_periodic_box(dtype):
    # 81 atoms in a 9.3 Å box: several images of one atom inside the 5.2 Å cutoff; C and N
    # are absent, so their radial and pair columns must stay exactly zero.
    vectors, layout = _layout(_water_box(3, seed=2), ANI1X, dtype)
    ours, _ = _assert_matches(vectors, layout, ANI1X, seed=3)
    n_r = len(ANI1X.radial_shifts)
    for s in (SPECIES["C"], SPECIES["N"]):
        assert torch.count_nonzero(ours[:, s * n_r : (s + 1) * n_r]) == 0
    assert torch.count_nonzero(ours[:, ANI1X.radial_length :]) > 0


@pytest.mark.parametrize(
    ("zeta", "n_sections"),
    [(1.0, 3), (2.0, 11), (3.7, 8), (14.1, 4), (32.0, 17), (70.0, 6)],
)
def test_matches_reference_for_other_hyperparameters(zeta, n_sections):
    """Integer ζ (binary powers), non-integer and > 64 (pow); section counts that are not
    a multiple of the kernel's block of 8; 3 species, odd shift counts."""
    params = AEVParams(
        num_species=3,
        radial_cutoff=4.6,
        radial_eta=9.0,
        radial_shifts=(0.8, 1.7, 2.9, 3.3, 4.1),
        angular_cutoff=3.8,
        angular_eta=5.5,
        zeta=zeta,
        angular_shifts=(0.9, 1.8, 2.6),
        sections=tuple(np.linspace(0.1, 3.0, n_sections)),
    )
    atoms = _random_molecule(np.random.default_rng(5), 24, symbols="HCN")
    for dtype in (torch.float64, torch.float32):
        vectors, layout = _layout(atoms, params, dtype)
        _assert_matches(vectors, layout, params, seed=int(zeta))


def test_results_do_not_depend_on_thread_count():
    vectors, layout = _layout(_water_box(3, seed=4), ANI1X, torch.float32)
    grad_out = torch.randn(layout.num_atoms, ANI1X.num_features)
    before = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_value_and_grad(aev_cpu, vectors, layout, ANI1X, grad_out))
    finally:
        torch.set_num_threads(before)
    for out, g in results[1:]:  # each atom is done by one thread in a fixed order: bitwise
        assert torch.equal(out, results[0][0]) and torch.equal(g, results[0][1])


def _small_system(dtype=torch.float64):
    """5 atoms of 2 species with several angular triples, and a 2-species parameter set."""
    params = DescriptorConfig.preset("ani1x").params(2)
    atoms = Atoms(
        "OHHOH",
        positions=[[0, 0, 0], [0.96, 0, 0], [-0.3, 0.9, 0.1], [2.6, 0.4, 0.3], [3.1, 1.2, -0.5]],
    )
    species = {"H": 0, "O": 1}
    b = Batch.from_atoms(atoms, dtype=torch.float64)
    p = b.neighbors(params.radial_cutoff)
    vec = b.positions[p.j] - b.positions[p.i]
    sp = torch.tensor([species[s] for s in atoms.get_chemical_symbols()])
    layout = pair_layout(sp, vec, p.i, p.j, params.radial_cutoff, params.angular_cutoff)
    assert layout.num_triples() >= 6
    return vec[layout.order].to(dtype), layout, params


def test_gradcheck_first_derivative():
    vectors, layout, params = _small_system()
    v = vectors.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: aev_cpu(x, layout, params), (v,))


def test_gradgradcheck_double_backward():
    vectors, layout, params = _small_system()
    v = vectors.clone().requires_grad_(True)
    go = torch.randn(layout.num_atoms, params.num_features, dtype=torch.float64)
    assert torch.autograd.gradgradcheck(
        lambda x: aev_cpu(x, layout, params), (v,), grad_outputs=(go.requires_grad_(True),)
    )


def test_double_backward_matches_reference():
    """Force training: d/dw and d/dv of a loss on forces whose cotangent depends on w."""
    vectors, layout, params = _small_system()
    w = torch.randn(params.num_features, dtype=torch.float64)
    results = []
    for fn in (aev_cpu, aev_torch):
        v = vectors.clone().requires_grad_(True)
        wr = w.clone().requires_grad_(True)
        out = fn(v, layout, params)
        energy = (torch.tanh(out) * wr).sum()
        (g,) = torch.autograd.grad(energy, v, create_graph=True)
        results.append(torch.autograd.grad((g**2).sum(), (wr, v)))
    for ours, ref in zip(*results):
        # the double backward is the torch reference itself; only the first backward
        # (fused kernel, exact formula, double rounding) differs
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_third_derivative_raises():
    vectors, layout, params = _small_system()
    v = vectors.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(aev_cpu(v, layout, params).sum(), v, create_graph=True)
    (gg,) = torch.autograd.grad(g.pow(2).sum(), v, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        gg.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairs_exactly_at_the_cutoffs_contribute_nothing(dtype):
    rc, ac = ANI1X.radial_cutoff, ANI1X.angular_cutoff
    atoms = Atoms(
        "OHHC",
        positions=[[0, 0, 0], [rc, 0, 0], [0, ac, 0], [0, 0, 1.1]],
    )
    # widen the layout so both pairs reach the kernels; they must drop them themselves
    vectors, layout = _layout(atoms, ANI1X, dtype, margin=0.5)
    ours, g = _assert_matches(vectors, layout, ANI1X)
    n_r = len(ANI1X.radial_shifts)
    # O sees H at exactly R_c (no radial term) and at exactly the angular cutoff (radial
    # term only): its only angular triple-partner set is {H(ac), C}; H(ac) carries f_c = 0
    row_o = ours[0]
    assert torch.count_nonzero(row_o[ANI1X.radial_length :]) == 0
    assert torch.count_nonzero(row_o[SPECIES["H"] * n_r : (SPECIES["H"] + 1) * n_r]) > 0
    # a configuration with only the at-cutoff pair: everything vanishes, gradient too
    two = Atoms("OH", positions=[[0, 0, 0], [rc, 0, 0]])
    vectors, layout = _layout(two, ANI1X, dtype, margin=0.5)
    assert layout.row_ptr[-1] == 2
    out, g = _value_and_grad(aev_cpu, vectors, layout, ANI1X, torch.ones(2, ANI1X.num_features))
    assert torch.count_nonzero(out) == 0 and torch.count_nonzero(g) == 0


def test_atom_without_neighbours_and_empty_angular_lists():
    # two atoms 4 Å apart: radial terms only (empty angular lists); one far-away atom alone
    atoms = Atoms("OHN", positions=[[0, 0, 0], [4.0, 0, 0], [30.0, 0, 0]])
    vectors, layout = _layout(atoms, ANI1X, torch.float64)
    assert layout.angular.numel() == 0
    ours, _g = _assert_matches(vectors, layout, ANI1X)
    assert torch.count_nonzero(ours[2]) == 0
    assert torch.count_nonzero(ours[:, ANI1X.radial_length :]) == 0
    assert torch.count_nonzero(ours[:2, : ANI1X.radial_length]) > 0


@pytest.mark.parametrize("n_atoms", [0, 1])
def test_no_pairs(n_atoms):
    species = torch.zeros(n_atoms, dtype=torch.long)
    empty = torch.zeros(0, dtype=torch.long)
    vec = torch.zeros((0, 3), dtype=torch.float32, requires_grad=True)
    layout = pair_layout(species, vec, empty, empty, 5.2, 3.5)
    out = aev_cpu(vec, layout, ANI1X)
    assert out.shape == (n_atoms, ANI1X.num_features) and torch.count_nonzero(out) == 0
    (g,) = torch.autograd.grad(out.sum(), vec, allow_unused=True)
    assert g is not None and g.shape == (0, 3)


def test_non_contiguous_vectors_and_int32_indices():
    vectors, layout = _layout(_random_molecule(np.random.default_rng(3), 12), ANI1X, torch.float64)
    ref, g_ref = _value_and_grad(aev_torch, vectors, layout, ANI1X, torch.ones(12, 384))
    layout32 = PairLayout(
        order=layout.order,
        center=layout.center,
        neighbor=layout.neighbor,
        neighbor_species=layout.neighbor_species.to(torch.int32),
        row_ptr=torch.stack([layout.row_ptr, layout.row_ptr], 1)[:, 0],  # strided view
        angular=layout.angular.to(torch.int32),
        angular_row_ptr=layout.angular_row_ptr.to(torch.int32),
        max_angular=layout.max_angular,
    )
    v = vectors.clone().requires_grad_(True)
    v_nc = v.t().contiguous().t()  # column-major copy
    assert not v_nc.is_contiguous()
    out = aev_cpu(v_nc, layout32, ANI1X)
    (g,) = torch.autograd.grad(out, v, torch.ones_like(out))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_rejects_other_dtypes():
    vectors, layout, params = _small_system(torch.float64)
    with pytest.raises(TypeError, match="float32 or float64"):
        aev_cpu(vectors.half(), layout, params)


@pytest.mark.parametrize("periodic", [False, True])
def test_potential_forces_cpu_backend_equal_torch(periodic):
    from nnp_lab import Potential

    torch.manual_seed(0)
    pot = Potential(species=["H", "C", "N", "O"], descriptor="ani1x", hidden=[16, 8]).double()
    atoms = _water_box(2, seed=7) if periodic else _random_molecule(np.random.default_rng(9), 15)
    res = {}
    for backend in ("torch", "cpu"):
        pot.descriptor.backend = backend
        batch = Batch.from_atoms(atoms, dtype=torch.float64)
        out = pot(batch, forces=True, stress=periodic, create_graph=True)
        # force training: the loss on forces differentiates the first backward again
        loss = out["forces"].pow(2).sum() + (out["stress"].pow(2).sum() if periodic else 0)
        # (output biases do not affect forces: unused)
        grads = torch.autograd.grad(loss, list(pot.networks.parameters()), allow_unused=True)
        res[backend] = (out, grads)
    (o_t, g_t), (o_c, g_c) = res["torch"], res["cpu"]
    for key in ("energy", "forces", *(("stress",) if periodic else ())):
        torch.testing.assert_close(o_c[key], o_t[key], rtol=1e-10, atol=1e-12)
    assert sum(g is not None for g in g_t) > 0
    for a, b in zip(g_c, g_t):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_shift_recurrence_with_sharp_gaussians(dtype):
    """Equally spaced shifts take the kernel's 3-exponential recurrence; many sharp
    Gaussians (η = 60 Å⁻², 40 shifts) drive most terms through underflow."""
    params = AEVParams(
        num_species=2,
        radial_cutoff=5.0,
        radial_eta=60.0,
        radial_shifts=tuple(np.linspace(0.7, 4.9, 40)),
        angular_cutoff=3.6,
        angular_eta=30.0,
        zeta=8.0,
        angular_shifts=tuple(np.linspace(0.8, 3.4, 12)),
        sections=tuple(np.linspace(0.2, 2.9, 8)),
    )
    atoms = _random_molecule(np.random.default_rng(11), 30, symbols="HC")
    vectors, layout = _layout(atoms, params, dtype)
    ours, _ = _assert_matches(vectors, layout, params, seed=3)
    assert torch.count_nonzero(ours) > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_vjp_equals_one_backward_per_member(dtype):
    """The committee pullback (K cotangents in one call, geometry shared) gives each
    member's gradient exactly as K separate backward passes would (same order of sums)."""
    from nnp_lab.kernels.aev_cpu import aev_cpu_vjp

    vectors, layout = _layout(_water_box(2, seed=7), ANI1X, dtype)
    gen = torch.Generator().manual_seed(1)
    cot = torch.randn((5, layout.num_atoms, ANI1X.num_features), generator=gen, dtype=dtype)
    batched = aev_cpu_vjp(vectors, layout, ANI1X, cot)  # (P, K, 3)
    assert batched.shape == (vectors.shape[0], 5, 3)
    for k in range(5):
        _, single = _value_and_grad(aev_cpu, vectors, layout, ANI1X, cot[k])
        torch.testing.assert_close(batched[:, k], single, rtol=0, atol=0)
        _, ref = _value_and_grad(aev_torch, vectors, layout, ANI1X, cot[k])
        scale = float(ref.abs().max())
        torch.testing.assert_close(batched[:, k], ref, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@pytest.mark.parametrize(
    "atoms",
    [
        molecule("CH3CH2OH"),
        Atoms("Cu", cell=np.eye(3) * 2.5, pbc=True),  # a single atom: only self-images
        Atoms("CuCu", positions=[[0, 0, 0], [1.2, 1.3, 0.4]], cell=[3.0, 2.7, 8.0], pbc=[1, 1, 0]),
        Atoms("H"),
    ],
    ids=["molecule", "self-images", "slab", "lone-atom"],
)
def test_full_list_from_half_list_equals_vesin_full_list(atoms):
    """The counting-sort expansion of vesin's half list gives the same directed pairs
    (with shifts) as vesin's own full list, grouped by centre."""
    import vesin

    from nnp_lab.kernels.aev_cpu import full_from_half

    cutoff = 5.0
    pbc = np.asarray(atoms.pbc)
    box = atoms.cell.array if pbc.any() else np.zeros((3, 3))
    full = vesin.NeighborList(cutoff=cutoff, full_list=True)
    i, j, s = full.compute(atoms.positions, box, pbc, quantities="ijS")
    half = vesin.NeighborList(cutoff=cutoff, full_list=False)
    hi, hj, hs = half.compute(atoms.positions, box, pbc, quantities="ijS")
    fi, fj, fs, row_ptr = full_from_half(
        torch.from_numpy(hi.astype(np.int64)),
        torch.from_numpy(hj.astype(np.int64)),
        torch.from_numpy(hs.astype(np.int32)),
        len(atoms),
    )
    assert bool((fi[1:] >= fi[:-1]).all())
    counts = np.bincount(fi.numpy(), minlength=len(atoms))
    assert row_ptr.tolist() == [0, *np.cumsum(counts).tolist()]
    ours = sorted(zip(fi.tolist(), fj.tolist(), map(tuple, fs.tolist())))
    ref = sorted(zip(i.astype(int).tolist(), j.astype(int).tolist(), map(tuple, s.tolist())))
    assert ours == ref


_BUILD_AND_EVALUATE = """
import torch
from nnp_lab.kernels.aev_cpu import aev_cpu, build_directory, load_extension
from nnp_lab.kernels.layout import pair_layout
from nnp_lab.models.descriptor import DescriptorConfig

load_extension()
params = DescriptorConfig.preset("ani1x").params(4)
vec = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
layout = pair_layout(torch.zeros(2, dtype=torch.long), vec, torch.tensor([0, 1]),
                     torch.tensor([1, 0]), 5.2, 3.5)
print("built", build_directory(), float(aev_cpu(vec, layout, params).sum()))
"""


def test_a_killed_build_does_not_block_later_builds(tmp_path):
    """A process killed inside torch's build step leaves its ``lock`` marker behind; torch
    would wait on it forever. Two fresh processes, started together on such a folder, both
    get a working extension (one builds, the other waits for it and loads the result)."""
    from nnp_lab.kernels.aev_cpu import extension_name

    folder = tmp_path / extension_name()
    folder.mkdir()
    (folder / "lock").touch()  # what SIGKILL during load_inline leaves
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD_AND_EVALUATE],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:  # well inside pytest's own timeout, so a hang fails here and kills both
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    values = [out.strip().splitlines()[-1].split() for out in outs]
    assert all(v[1] == str(folder) for v in values)
    assert values[0][2] == values[1][2] and float(values[0][2]) > 0
    assert not (folder / "lock").exists()
    assert sum("left by a killed build" in out for out in outs) == 1
