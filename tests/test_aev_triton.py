"""Fused Triton AEV kernels vs the torch reference, run on the CPU by the Triton interpreter.

``TRITON_INTERPRET=1`` is set by a module-scoped fixture (only while these tests run, so
other test modules keep seeing the real environment). That is enough whatever the import
order, because :mod:`nnp_lab.kernels.aev_triton` applies ``@triton.jit`` lazily at the
first launch, per interpreter setting (``test_decoration_follows_flag``).

The interpreter costs ~1 ms per program and ~10 ms per angular neighbour, so systems are
tiny and blocks large.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from nnp_lab.data.batch import Batch
from nnp_lab.kernels import aev_triton as aev_triton_module
from nnp_lab.kernels.aev_torch import aev_torch
from nnp_lab.kernels.aev_triton import aev_triton, default_block_angular
from nnp_lab.kernels.layout import PairLayout, pair_layout
from nnp_lab.kernels.params import AEVParams
from nnp_lab.models.descriptor import DescriptorConfig

PARAMS = DescriptorConfig.preset("ani1x").params(4)
# interpreter-friendly blocks: one chunk per atom for these systems
BLOCKS = dict(block_radial=64, block_angular=32)
# "relative" = relative to the largest reference entry: single features (e.g. ζ=32 powers
# near 0) are far below the float resolution of the sum they belong to
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


@pytest.fixture(autouse=True, scope="module")
def _interpret():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        mp.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        yield


def full_pairs(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered pairs i != j of a non-periodic structure: (i, j, vectors)."""
    n = pos.shape[0]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    i, j = i[keep], j[keep]
    return i, j, pos[j] - pos[i]


def random_molecule(
    n: int, n_species: int, seed: int, box: float = 3.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random positions (no two atoms closer than 0.8 Å) and species in [0, n_species)."""
    rng = np.random.default_rng(seed)
    while True:
        pos = rng.uniform(0.0, box, (n, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n)
        if d.min() > 0.8:
            break
    return torch.from_numpy(pos), torch.from_numpy(rng.integers(0, n_species, n))


def sorted_system(
    pos: torch.Tensor,
    species: torch.Tensor,
    params: AEVParams = PARAMS,
    dtype: torch.dtype = torch.float64,
    layout_pad: float = 0.0,
) -> tuple[torch.Tensor, PairLayout]:
    """(vectors[layout.order], layout); ``layout_pad`` widens the layout's cutoffs so pairs
    at and beyond the descriptor cutoffs reach the kernels."""
    i, j, vec = full_pairs(pos)
    vec = vec.to(dtype)
    layout = pair_layout(
        species,
        vec,
        i,
        j,
        params.radial_cutoff + layout_pad,
        params.angular_cutoff + layout_pad,
    )
    return vec[layout.order].contiguous(), layout


def check_against_reference(
    vectors: torch.Tensor,
    layout: PairLayout,
    params: AEVParams = PARAMS,
    seed: int = 0,
    **blocks: int,
) -> None:
    """Values and vector gradients (random upstream weights) of Triton vs aev_torch."""
    blocks = blocks or BLOCKS
    tol = RTOL[vectors.dtype]
    v1 = vectors.detach().clone().requires_grad_(True)
    v2 = vectors.detach().clone().requires_grad_(True)
    out = aev_triton(v1, layout, params, **blocks)
    ref = aev_torch(v2, layout, params)
    assert out.shape == ref.shape == (layout.num_atoms, params.num_features)
    assert out.dtype == vectors.dtype
    scale = float(ref.detach().abs().max()) if ref.numel() else 1.0
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol * max(scale, 1e-3))
    if vectors.shape[0] == 0:
        return
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=ref.dtype)
    (g,) = torch.autograd.grad((out * w).sum(), v1)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), v2)
    gscale = float(g_ref.abs().max())
    torch.testing.assert_close(g, g_ref, rtol=tol, atol=tol * max(gscale, 1e-3))


# ---------------------------------------------------------------- random inputs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_species", [1, 2, 4])
def test_random_molecules(dtype, n_species):
    # float32 1e-5 / float64 1e-10 of the largest entry: same formulas, different rounding
    # (acos/cos of the reference vs the cos(θ-θ_z) identity here)
    pos, species = random_molecule(7, n_species, seed=n_species)
    vectors, layout = sorted_system(pos, species, dtype=dtype)
    assert layout.num_triples() > 0
    check_against_reference(vectors, layout)


def test_periodic_box():
    # a 2-atom-type rattled rocksalt cell (8 atoms, 3.3 Å): each atom sees many periodic
    # images, several of them of itself; float64, 1e-10 of the largest entry
    atoms = bulk("NaCl", "rocksalt", a=3.3, cubic=True)
    atoms.positions += np.random.default_rng(1).normal(0.0, 0.1, atoms.positions.shape)
    batch = Batch.from_atoms(atoms)
    params = DescriptorConfig.preset("ani1x", radial_cutoff=4.0, angular_cutoff=2.6).params(2)
    pairs = batch.neighbors(params.radial_cutoff)
    cell = batch.cell[0]
    vec = batch.positions[pairs.j] - batch.positions[pairs.i] + pairs.shifts @ cell
    species = (batch.numbers == 17).long()
    layout = pair_layout(
        species, vec, pairs.i, pairs.j, params.radial_cutoff, params.angular_cutoff
    )
    assert layout.max_angular >= 6 and bool((layout.neighbor == layout.center).any())
    check_against_reference(vec[layout.order], layout, params)


def test_small_chunks_and_ani2x():
    # chunks smaller than an atom's pair lists (radial 4, angular 2) exercise the chunk
    # loops; ANI-2x params have K=8 shifts, Z=4 sections; float64 1e-10
    params = DescriptorConfig.preset("ani2x").params(3)
    pos, species = random_molecule(5, 3, seed=7, box=3.0)
    vectors, layout = sorted_system(pos, species, params)
    assert layout.max_angular > 2
    check_against_reference(vectors, layout, params, block_radial=4, block_angular=2)


# ---------------------------------------------------------------- edge cases


def test_isolated_atom_absent_species_empty_angular():
    # atom 0 and 1 are 4.0 Å apart (radial only: empty angular list for both), atom 2 has
    # no neighbour at all, species 1 and 3 are absent; float64 1e-10
    pos = torch.tensor([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [30.0, 0.0, 0.0]], dtype=torch.float64)
    species = torch.tensor([0, 2, 2])
    vectors, layout = sorted_system(pos, species)
    assert layout.angular.numel() == 0 and layout.max_angular == 0
    out = aev_triton(vectors, layout, PARAMS, **BLOCKS)
    assert torch.all(out[2] == 0) and torch.all(out[:, PARAMS.radial_length :] == 0)
    assert out[0].abs().sum() > 0
    check_against_reference(vectors, layout)


def test_single_atom_and_no_atoms():
    # no pairs at all: zeros, and a zero gradient of the (0, 3) vectors; exact
    for n in (1, 0):
        pos = torch.zeros((n, 3), dtype=torch.float64)
        vectors, layout = sorted_system(pos, torch.zeros(n, dtype=torch.long))
        v = vectors.requires_grad_(True)
        out = aev_triton(v, layout, PARAMS)
        assert out.shape == (n, PARAMS.num_features) and torch.all(out == 0)
        (g,) = torch.autograd.grad(out.sum(), v, allow_unused=True, materialize_grads=True)
        assert g.shape == (0, 3)


def test_pairs_at_and_beyond_cutoff():
    # the layout is built with cutoffs widened by 0.5 Å, so the kernels see a pair exactly
    # at R_c (vector (R_c, 0, 0): its norm is R_c exactly), one exactly at the angular R_c
    # and pairs beyond both (the formula 0.5cos(πr/R_c)+0.5 is not 0 there): they must add nothing and get zero gradient, as in the reference;
    # float64 1e-10
    rc, rca = PARAMS.radial_cutoff, PARAMS.angular_cutoff
    pos = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [rc, 0.0, 0.0],
            [0.0, rca, 0.0],
            [1.0, 1.0, 0.5],
            [-1.0, 0.2, 3.7],
            [0.0, 0.0, -rc - 0.25],
        ],
        dtype=torch.float64,
    )
    species = torch.tensor([0, 1, 2, 3, 1, 0])
    vectors, layout = sorted_system(pos, species, layout_pad=0.5)
    dist = vectors.norm(dim=-1)
    assert bool((dist == rc).any()) and bool((dist[layout.angular] == rca).any())
    assert bool((dist[layout.angular] > rca).any()) and bool((dist > rc).any())
    check_against_reference(vectors, layout)
    v = vectors.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(aev_triton(v, layout, PARAMS, **BLOCKS).sum(), v)
    assert torch.all(g[dist >= rc] == 0)


# ---------------------------------------------------------------- autograd


def tiny_system() -> tuple[torch.Tensor, PairLayout, AEVParams]:
    """3 atoms, 2 species, all pairs angular; small K/Z so gradcheck stays cheap."""
    params = DescriptorConfig.preset(
        "ani1x",
        radial_shifts=[0.9, 1.5, 2.1],
        zeta=4.0,
        angular_shifts=[0.9, 1.8],
        sections=[0.4, 1.5, 2.6],
    ).params(2)
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.1, 0.0], [0.2, 1.3, 0.4]], dtype=torch.float64)
    vectors, layout = sorted_system(pos, torch.tensor([0, 1, 1]), params)
    return vectors, layout, params


def test_gradcheck():
    # first derivative (the Triton backward kernel) vs central differences, float64. Fast
    # mode (random projections u·J·v) because the slow mode runs one interpreted backward
    # per output entry (~20 s); the full Jacobian is compared with the reference's through
    # random upstream weights in every other test
    vectors, layout, params = tiny_system()
    v = vectors.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x: aev_triton(x, layout, params, **BLOCKS),
        (v,),
        eps=1e-6,
        atol=1e-7,
        fast_mode=True,
    )


def test_gradgradcheck():
    # double backward (through the torch reference) vs finite differences of the Triton
    # first derivative, w.r.t. both the vectors and grad_out; fast mode keeps it cheap
    vectors, layout, params = tiny_system()
    v = vectors.clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(
        lambda x: aev_triton(x, layout, params, **BLOCKS),
        (v,),
        eps=1e-6,
        atol=1e-6,
        fast_mode=True,
    )


def test_force_training_gradient_matches_reference():
    # d(force loss)/d(weights) — the double-backward path of force training; float64 1e-10
    pos, species = random_molecule(5, 2, seed=3, box=3.0)
    vectors, layout = sorted_system(pos, species)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(PARAMS.num_features, generator=gen, dtype=torch.float64)
    results = []
    for fn in (aev_torch, lambda v, lay, p: aev_triton(v, lay, p, **BLOCKS)):
        w = weight.clone().requires_grad_(True)
        v = vectors.clone().requires_grad_(True)
        energy = torch.tanh(fn(v, layout, PARAMS) @ w).sum()
        (dv,) = torch.autograd.grad(energy, v, create_graph=True)
        (dw,) = torch.autograd.grad((dv**2).sum(), w)
        results.append(dw)
    torch.testing.assert_close(
        results[1], results[0], rtol=1e-10, atol=1e-10 * float(results[0].abs().max())
    )


def test_third_derivative_matches_reference():
    # beyond the brief's double backward: the torch-reference backward of the backward stays
    # differentiable (d/dv of a Hessian-vector product); catches mixing the grad_out and
    # vector paths; float64 1e-9 of the largest entry (three chained derivatives)
    vectors, layout, params = tiny_system()
    weight = torch.randn(
        params.num_features, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    results = []
    for fn in (aev_torch, lambda v, lay, p: aev_triton(v, lay, p, **BLOCKS)):
        v = vectors.clone().requires_grad_(True)
        energy = torch.tanh(fn(v, layout, params) @ weight).sum()
        (g,) = torch.autograd.grad(energy, v, create_graph=True)
        (h,) = torch.autograd.grad((g**2).sum(), v, create_graph=True)
        (t,) = torch.autograd.grad((h**2).sum(), v)
        results.append(t)
    torch.testing.assert_close(
        results[1], results[0], rtol=1e-9, atol=1e-9 * float(results[0].abs().max())
    )


def test_backend_dispatch():
    # compute_aev(backend="triton") on the unsorted full list equals the torch backend;
    # float64 1e-10
    from nnp_lab.kernels.backend import compute_aev

    pos, species = random_molecule(5, 2, seed=5, box=3.0)
    i, j, vec = full_pairs(pos)
    out = compute_aev(species, vec, i, j, PARAMS, backend="triton")
    ref = compute_aev(species, vec, i, j, PARAMS, backend="torch")
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))


# ---------------------------------------------------------------- errors and plumbing


def test_cpu_without_interpreter_raises(monkeypatch):
    vectors, layout, params = tiny_system()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        aev_triton(vectors, layout, params)


def test_bad_arguments_raise():
    vectors, layout, params = tiny_system()
    with pytest.raises(ValueError, match="power of two"):
        aev_triton(vectors, layout, params, block_angular=24)
    with pytest.raises(ValueError, match="tile"):
        aev_triton(vectors, layout, params, block_radial=1 << 20)
    with pytest.raises(TypeError, match="float32 and float64"):
        aev_triton(vectors.half(), layout, params)
    with pytest.raises(ValueError, match="sorted"):
        aev_triton(vectors[:-1], layout, params)
    assert default_block_angular(0) == 16 and default_block_angular(40) == 32


def test_decoration_follows_flag(monkeypatch):
    # the module is imported at collection, before the fixture sets the flag (unless it
    # was set outside); kernels are decorated at launch, per flag value
    from triton.runtime.interpreter import InterpretedFunction

    assert isinstance(aev_triton_module._kernel("fwd"), InterpretedFunction)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not isinstance(aev_triton_module._kernel("fwd"), InterpretedFunction)


def test_atoms_input_roundtrip():
    # sanity: an ase molecule through Batch (non-periodic) gives the reference; float64
    atoms = Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    batch = Batch.from_atoms(atoms)
    pairs = batch.neighbors(PARAMS.radial_cutoff)
    vec = batch.positions[pairs.j] - batch.positions[pairs.i]
    species = torch.tensor([3, 0, 0])
    layout = pair_layout(
        species, vec, pairs.i, pairs.j, PARAMS.radial_cutoff, PARAMS.angular_cutoff
    )
    check_against_reference(vec[layout.order], layout)
