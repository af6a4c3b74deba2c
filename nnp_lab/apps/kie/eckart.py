"""KIE(T) through the symmetric Eckart barrier: exact, RPMD, quantum TST by mass TI, classical.

    python -m nnp_lab.apps.kie.eckart --out eckart_kie.nc --temperatures 1000 500 372 263 186

For each temperature and isotope (mass m and 2m of Craig & Manolopoulos' barrier) the
result holds the exact quantum rate, the RPMD rate (κ · centroid-TST) with its error, the
centroid-TST rate, κ, the classical rate and the same RPMD machinery with P = 1; and per
temperature the KIE k(m)/k(2m) of each route plus the quantum-TST KIE by thermodynamic
integration over the mass. Rates per unit reactant density, Å/fs.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nnp_lab.dynamics.pimd.normal_modes import HBAR
from nnp_lab.dynamics.pimd.rates import (
    ECKART_MASS,
    barrier_frequency,
    classical_rate,
    crossover_temperature,
    eckart,
    eckart_exact_rate,
    mass_ti_kie,
    rpmd_rate,
)
from nnp_lab.errors import InputError

RESOURCE = Path(__file__).resolve().parents[2] / "resources" / "kie" / "eckart_kie.nc"
"""The shipped table (1000, 500, 372, 263, 186 K; the command in the module docstring)."""


def beads_for(temperature_K: float, height: float, width: float, mass: float) -> int:
    """P = 8 ⌈βħω_b / 2⌉ (≥ 8): enough beads for the barrier-top frequency (checked: P = 32
    and 64 give the same RPMD rate at T_c/2 within 5 %)."""
    from ase import units

    x = HBAR * barrier_frequency(height, width, mass) / (units.kB * temperature_K)
    return max(8, 8 * math.ceil(x / 2))


def eckart_kie(
    temperatures: Sequence[float],
    mass: float = ECKART_MASS,
    heavy_factor: float = 2.0,
    steps: int = 3000,
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> xr.Dataset:
    """The KIE table as an xarray Dataset (dims ``temperature``, ``isotope``)."""
    temps = np.asarray(temperatures, dtype=float)
    if temps.ndim != 1 or len(temps) == 0 or (temps <= 0).any():
        raise InputError("temperatures must be a non-empty list of positive kelvin")
    barrier = eckart()
    v0, a = barrier.height, barrier.width
    masses = np.array([mass, heavy_factor * mass])
    shape = (len(temps), 2)
    out = {
        k: np.zeros(shape)
        for k in ("exact", "rpmd", "rpmd_err", "qtst", "kappa", "classical", "p1", "n_beads")
    }
    ti = np.zeros(len(temps))
    ti_err = np.zeros(len(temps))
    t0 = time.perf_counter()
    for i, t in enumerate(temps):
        for j, m in enumerate(masses):
            p_ = beads_for(t, v0, a, masses[0])
            kw = {
                "reactant_x": -3.0,
                "nodes": 12,
                "replicas": 16,
                "steps": steps,
                "kappa_kw": {"replicas": 64, "releases": 4, "t_max_fs": 40.0},
                "seed": seed,
            }
            r = rpmd_rate(barrier, m, t, p_, **kw)
            r1 = rpmd_rate(barrier, m, t, 1, **{**kw, "steps": 200})
            out["exact"][i, j] = eckart_exact_rate(t, v0, a, m)
            out["rpmd"][i, j] = r["rate"]
            out["rpmd_err"][i, j] = r["rate_err"]
            out["qtst"][i, j] = r["qtst_rate"]
            out["kappa"][i, j] = r["kappa"]
            out["classical"][i, j] = classical_rate(t, v0, m)
            out["p1"][i, j] = r1["rate"]
            out["n_beads"][i, j] = p_
        k = mass_ti_kie(
            barrier, masses[0], masses[1], t, beads_for(t, v0, a, masses[0]), steps=steps, seed=seed
        )
        ti[i], ti_err[i] = k["kie"], k["kie_err"]
        if progress is not None:
            progress(
                {
                    "stage": "eckart_kie",
                    "step": i + 1,
                    "steps": len(temps),
                    "elapsed_s": time.perf_counter() - t0,
                }
            )
    rate = {"units": "Å/fs", "long_name": "rate per unit reactant density"}
    ds = xr.Dataset(
        {
            "k_exact": (("temperature", "isotope"), out["exact"], rate),
            "k_rpmd": (("temperature", "isotope"), out["rpmd"], rate),
            "k_rpmd_err": (("temperature", "isotope"), out["rpmd_err"], rate),
            "k_qtst": (("temperature", "isotope"), out["qtst"], rate),
            "kappa": (("temperature", "isotope"), out["kappa"]),
            "k_classical": (("temperature", "isotope"), out["classical"], rate),
            "k_rpmd_p1": (("temperature", "isotope"), out["p1"], rate),
            "n_beads": (("temperature", "isotope"), out["n_beads"].astype(int)),
            "kie_qtst_ti": ("temperature", ti),
            "kie_qtst_ti_err": ("temperature", ti_err),
        },
        coords={
            "temperature": ("temperature", temps, {"units": "K"}),
            "isotope": ("isotope", ["m", f"{heavy_factor:g}m"]),
            "mass": ("isotope", masses, {"units": "amu"}),
        },
        attrs={
            "barrier": json.dumps({"height_eV": v0, "width_A": a}),
            "crossover_temperature_K": json.dumps(
                [crossover_temperature(v0, a, float(m)) for m in masses]
            ),
            "reference": "Craig & Manolopoulos, J. Chem. Phys. 122, 084106 (2005)",
            "wall_s": time.perf_counter() - t0,
        },
    )
    for name in ("exact", "rpmd", "qtst", "classical", "rpmd_p1"):
        k = ds[f"k_{name}"]
        ds[f"kie_{name}"] = k.isel(isotope=0) / k.isel(isotope=1)
    return ds


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="netCDF file for the table")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1000, 500, 372, 263, 186])
    ap.add_argument("--steps", type=int, default=3000)
    args = ap.parse_args(argv)
    ds = eckart_kie(args.temperatures, steps=args.steps)
    ds.to_netcdf(args.out, engine="h5netcdf")
    print(
        f"{'T/K':>6s} {'iso':>4s} {'P':>3s} {'exact':>10s} {'RPMD':>10s} {'RPMD/ex':>8s} "
        f"{'QTST/ex':>8s} {'kappa':>6s} {'cl/ex':>7s}"
    )
    for t in ds.temperature.values:
        for iso in ds.isotope.values:
            r = ds.sel(temperature=t, isotope=iso)
            ex = float(r.k_exact)
            print(
                f"{t:6.0f} {iso:>4s} {int(r.n_beads):3d} {ex:10.3e} {float(r.k_rpmd):10.3e} "
                f"{float(r.k_rpmd) / ex:8.3f} {float(r.k_qtst) / ex:8.3f} "
                f"{float(r.kappa):6.3f} {float(r.k_classical) / ex:7.3f}"
            )
    print(
        f"{'T/K':>6s} {'KIE exact':>10s} {'RPMD':>8s} {'QTST-TI':>8s} {'P=1':>8s} {'classical':>9s}"
    )
    for t in ds.temperature.values:
        r = ds.sel(temperature=t)
        print(
            f"{t:6.0f} {float(r.kie_exact):10.3f} {float(r.kie_rpmd):8.3f} "
            f"{float(r.kie_qtst_ti):8.3f} {float(r.kie_rpmd_p1):8.3f} {float(r.kie_classical):9.3f}"
        )


if __name__ == "__main__":
    main()
