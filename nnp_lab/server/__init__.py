"""Jupyter server extension: the nnp-lab REST API under ``<base_url>/nnp-lab/api/``.

Enabled on install (``etc/jupyter/jupyter_server_config.d/nnp_lab.json``). The job store
is ``<jupyter data dir>/nnp_lab/jobs.sqlite`` unless ``NNP_LAB_JOB_DB`` names another
file; jobs run in the server root, at most one worker per CPU core at a time (the rest
wait queued and start as slots free up). At start-up, jobs whose worker vanished (a machine
restart) are marked ``interrupted``; detached workers that still run keep running.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

API_PREFIX = "nnp-lab/api"


def job_db_path() -> Path:
    """Where the server keeps its job store."""
    env = os.environ.get("NNP_LAB_JOB_DB")
    if env:
        return Path(env)
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "nnp_lab" / "jobs.sqlite"


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.utils import url_path_join

    from nnp_lab.jobs.runner import JobManager
    from nnp_lab.server.handlers import ROUTES

    manager = JobManager(job_db_path(), serverapp.root_dir)
    interrupted = manager.store.reconcile()
    if interrupted:
        serverapp.log.warning(
            "nnp-lab: %d job(s) lost their worker and are now interrupted: %s",
            len(interrupted),
            ", ".join(interrupted),
        )
    from tornado.ioloop import PeriodicCallback

    def dispatch() -> None:  # start queued jobs as worker slots free up
        try:
            manager.dispatch()
        except Exception:  # never let the server's loop die of it; the next tick retries
            serverapp.log.exception("nnp-lab: dispatching queued jobs failed")

    callback = PeriodicCallback(dispatch, 1000)
    callback.start()
    web_app = serverapp.web_app
    web_app.settings["nnp_lab_manager"] = manager
    web_app.settings["nnp_lab_dispatcher"] = callback
    base = url_path_join(web_app.settings["base_url"], API_PREFIX)
    web_app.add_handlers(".*$", [(url_path_join(base, pattern), h) for pattern, h in ROUTES])
    serverapp.log.info("nnp-lab: API at %s, job store %s", base, manager.store.path)


# jupyter_server < 2 name
load_jupyter_server_extension = _load_jupyter_server_extension
