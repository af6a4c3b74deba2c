"""The oracle: reference calculations run as Dask tasks, every result cached as it arrives.

By default a ``distributed.LocalCluster`` (worker processes on this machine, everything
listening on 127.0.0.1, no dashboard) is started — worker processes are spawned, so a
script that runs the oracle needs the usual ``if __name__ == "__main__":`` guard; ``scheduler_address`` connects to an existing cluster instead
(dask-jobqueue on Slurm/PBS, Kubernetes, …). Each structure is one task running the
labeler's :meth:`~nnp_lab.data.labelers.Labeler.label`:

* a failed calculation (SCF not converged, …) comes back as a ``failed`` result with its
  reason — recorded, cached, and skipped by training;
* a task whose worker dies is re-run by Dask on another worker ``allowed_failures`` times
  (default once), then recorded as failed with the reason (``KilledWorker``) — never
  retried forever;
* results are written to the SQLite label cache by this process (the single writer) the
  moment each task finishes, so a killed run loses no finished label, and asking again
  for the same structure costs nothing (cache hit).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from nnp_lab.data.cache import LabelCache, cache_key
from nnp_lab.data.labelers import Labeler, LabelResult, make_labeler


class OracleConfig(BaseModel):
    """Where reference calculations run."""

    model_config = ConfigDict(extra="forbid")

    scheduler_address: str | None = Field(
        None, description="existing Dask scheduler (tcp://host:port); None = LocalCluster"
    )
    n_workers: int | None = Field(None, ge=1, description="LocalCluster workers (default: cores)")
    threads_per_worker: int = Field(1, ge=1)
    allowed_failures: int = Field(
        1, ge=0, description="re-runs of a task whose worker died (LocalCluster only)"
    )
    memory_limit: str = "auto"


def _label_task(labeler: Labeler, atoms: Atoms) -> LabelResult:
    """What a worker runs: one reference calculation (never raises for a failed one)."""
    return labeler.label(atoms)


class DaskOracle:
    """Label structures on a Dask cluster with an on-disk cache.

    Example::

        with DaskOracle({"kind": "emt"}, cache="labels.sqlite") as oracle:
            results = oracle.label(structures)
    """

    def __init__(
        self,
        labeler: Labeler | dict[str, Any],
        cache: str | os.PathLike | None = None,
        config: OracleConfig | dict | None = None,
    ):
        self.labeler = labeler if isinstance(labeler, Labeler) else make_labeler(labeler)
        self.config = config if isinstance(config, OracleConfig) else OracleConfig(**(config or {}))
        self.cache_path = None if cache is None else Path(cache)
        self._client: Any = None
        self._cluster: Any = None
        self.computed = 0  #: reference calculations this oracle paid for (not cache hits)

    # ------------------------------------------------------------------ cluster
    def start(self) -> DaskOracle:
        """Connect to the scheduler, or start a LocalCluster (idempotent)."""
        if self._client is not None:
            return self
        import dask
        from distributed import Client, LocalCluster

        cfg = self.config
        if cfg.scheduler_address:
            self._client = Client(cfg.scheduler_address)
            return self
        n_workers = cfg.n_workers or max(1, min(os.cpu_count() or 1, 4))
        with dask.config.set({"distributed.scheduler.allowed-failures": cfg.allowed_failures}):
            self._cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=cfg.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                # no dashboard; the scheduler's HTTP endpoints on a free loopback port
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                memory_limit=cfg.memory_limit,
            )
        self._client = Client(self._cluster)
        return self

    def close(self) -> None:
        """Shut the client (and a LocalCluster this oracle started) down."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskOracle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Any:
        return self.start()._client

    # ------------------------------------------------------------------ labelling
    def label(
        self,
        structures: Sequence[Atoms],
        progress: Callable[[int, int], None] | None = None,
        show_progress: bool = True,
    ) -> list[LabelResult]:
        """Results for ``structures`` in order: cache hits first, the rest on the cluster.

        Input a labeler can never handle raises :class:`~nnp_lab.errors.InputError` here,
        before anything is submitted. ``progress(done, total)`` after every result.
        """
        from distributed import as_completed

        structures = list(structures)
        for atoms in structures:
            self.labeler.check(atoms)
        results: list[LabelResult | None] = [None] * len(structures)
        cache = LabelCache(self.cache_path) if self.cache_path is not None else None
        try:
            keys = [cache_key(a, self.labeler) for a in structures]
            todo: dict[str, list[int]] = {}
            for k, key in enumerate(keys):
                hit = cache.get(key) if cache is not None else None
                if hit is not None:
                    results[k] = hit
                else:
                    todo.setdefault(key, []).append(k)  # identical structures: one task
            done = len(structures) - sum(len(v) for v in todo.values())
            total = len(structures)
            bar = tqdm(
                total=total,
                initial=done,
                desc=f"oracle ({self.labeler.method})",
                disable=not show_progress,
            )
            if progress is not None and done:
                progress(done, total)
            try:
                if todo:
                    client = self.client
                    # the labeler travels inside each task (it is small): scattered data
                    # die with the workers holding them, and a task whose input was lost
                    # is cancelled ("already forgotten") instead of retried
                    futures = {
                        client.submit(
                            _label_task, self.labeler, structures[idx[0]], pure=False
                        ): key
                        for key, idx in todo.items()
                    }
                    for fut in as_completed(futures):
                        key = futures[fut]
                        try:
                            res = fut.result()
                        except Exception as exc:  # worker lost too often, or task error
                            res = LabelResult.failed(
                                f"{type(exc).__name__} on the Dask cluster: {exc}"
                            )
                        self.computed += 1
                        if cache is not None:
                            cache.put(key, res, method=self.labeler.method)
                        for k in todo[key]:
                            results[k] = res
                            done += 1
                        bar.update(len(todo[key]))
                        if progress is not None:
                            progress(done, total)
            finally:
                bar.close()
        finally:
            if cache is not None:
                cache.close()
        return [r for r in results if r is not None]

    def label_structures(
        self,
        structures: Sequence[Atoms],
        progress: Callable[[int, int], None] | None = None,
        show_progress: bool = True,
    ) -> list[Atoms]:
        """Copies of ``structures`` carrying their results (status, error, method, labels)."""
        from nnp_lab.data.labelers import attach_result

        results = self.label(structures, progress=progress, show_progress=show_progress)
        out = []
        for atoms, res in zip(structures, results):
            a = atoms.copy()
            attach_result(a, res, self.labeler.method)
            out.append(a)
        return out
