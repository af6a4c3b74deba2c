"""The Jupyter server extension on a real Jupyter server (pytest-jupyter): authentication,
input validation, path safety, jobs through the API, event streams, previews."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import pytest
import yaml
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from nnp_lab.errors import InputError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TRAIN = {
    "kind": "train",
    "dataset": "cu.nc",
    "out": "run",
    "device": "cpu",
    "config": {"model": {"descriptor": "metal", "hidden": [8]}, "training": {"epochs": 3}},
}


@pytest.fixture
def jp_server_config(tmp_path):
    return {
        "ServerApp": {
            "jpserver_extensions": {"nnp_lab": True},
            "allow_unauthenticated_access": False,
        }
    }


@pytest.fixture(autouse=True)
def _job_db(tmp_path, monkeypatch):
    monkeypatch.setenv("NNP_LAB_JOB_DB", str(tmp_path / "state" / "jobs.sqlite"))


@pytest.fixture
def root(jp_root_dir, cu_dataset) -> Path:
    cu_dataset.save(jp_root_dir / "cu.nc")
    return Path(jp_root_dir)


async def api(jp_fetch, *path, method="GET", body=None, **params):
    kwargs = {"method": method, "params": params}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    elif method == "POST":
        kwargs["body"] = "{}"
    resp = await jp_fetch("nnp-lab", "api", *path, **kwargs)
    return resp.code, json.loads(resp.body) if resp.body else None


async def api_error(jp_fetch, *path, **kw):
    with pytest.raises(HTTPClientError) as info:
        await api(jp_fetch, *path, **kw)
    return info.value.code, json.loads(info.value.response.body)["message"]


async def wait_done(jp_fetch, job_id, timeout=240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, job = await api(jp_fetch, "jobs", job_id)
        if job["status"] in ("completed", "failed", "cancelled", "interrupted"):
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


OPENAPI = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"


def concrete_routes():
    """One concrete URL (and method) per registered route, to probe authentication."""
    from nnp_lab.server.handlers import ROUTES

    out = []
    for pattern, handler in ROUTES:
        url = re.sub(r"\(\?P<job_id>[^)]*\)", "0123456789ab", pattern)
        url = re.sub(r"\(\?P<action>[^)]*\)", "cancel", url)
        for method in ("get", "post"):
            if method in handler.__dict__:
                out.append((method.upper(), url))
    return out


async def test_every_route_refuses_unauthenticated_requests(jp_fetch, jp_base_url, jp_http_port):
    # requesting jp_fetch starts the HTTP server; requests below carry no token
    client = AsyncHTTPClient()
    routes = concrete_routes()
    assert len(routes) >= 8
    for method, url in routes:
        resp = await client.fetch(
            f"http://localhost:{jp_http_port}{jp_base_url}nnp-lab/api/{url}",
            method=method,
            body="{}" if method == "POST" else None,
            raise_error=False,
        )
        assert resp.code == 403, (method, url, resp.code)


def test_openapi_document_lists_every_route():
    doc = yaml.safe_load(OPENAPI.read_text())
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    from nnp_lab.server.handlers import ROUTES

    registered = set()
    for pattern, handler in ROUTES:
        path = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)
        for method in ("get", "post"):
            if method in handler.__dict__:
                registered.add((method.upper(), path))
    assert registered == documented


async def test_train_job_through_the_api_with_events_and_preview(jp_fetch, root):
    code, job = await api(jp_fetch, "jobs", method="POST", body={"spec": TRAIN})
    assert code == 201 and job["status"] in ("queued", "running")
    done = await wait_done(jp_fetch, job["id"])
    assert done["status"] == "completed", done["error"]
    _, ev = await api(jp_fetch, "jobs", job["id"], "events", since=0)
    assert [e["payload"]["epoch"] for e in ev["events"] if e["step"] == "epoch"] == [1, 2, 3]
    _, later = await api(jp_fetch, "jobs", job["id"], "events", since=ev["last"])
    assert later["events"] == [] and later["status"] == "completed"
    _, jobs = await api(jp_fetch, "jobs")
    assert [j["id"] for j in jobs["jobs"]] == [job["id"]]
    # the stream replays the events and ends with the job
    resp = await jp_fetch("nnp-lab", "api", "jobs", job["id"], "stream", request_timeout=60)
    text = resp.body.decode()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert text.count("event: epoch") == 3 and "completed" in text
    _, models = await api(jp_fetch, "files", kind="models")
    assert [f["path"] for f in models["files"]] == ["run/checkpoint.pt", "run/model.pt"]
    _, results = await api(jp_fetch, "files", kind="results")
    assert "run/metrics.nc" in [f["path"] for f in results["files"]]
    _, datasets = await api(jp_fetch, "files", kind="datasets")
    assert [f["path"] for f in datasets["files"]] == ["cu.nc"]
    _, metrics = await api(jp_fetch, "preview", path="run/metrics.nc")
    assert metrics["type"] == "metrics" and metrics["epoch"] == [1, 2, 3]
    _, summary = await api(jp_fetch, "preview", path="cu.nc")
    assert summary["summary"]["structures"] == 24
    _, model = await api(jp_fetch, "preview", path="run/model.pt")
    assert model["type"] == "model" and model["config"]["species"] == ["Cu"]
    # "Open in notebook": the template notebook runs top to bottom
    code, made = await api(jp_fetch, "jobs", job["id"], "notebook", method="POST")
    assert code == 201 and made["path"].endswith(".ipynb")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(root / made["path"], as_version=4)
    folder = (root / made["path"]).parent  # Lab starts the kernel in the notebook's folder
    await NotebookClient(
        nb, timeout=300, resources={"metadata": {"path": str(folder)}}
    ).async_execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "final validation force MAE" in outputs and "['Cu']" in outputs
    views = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert views, "the TrainingMonitor widget was not displayed"


async def test_bad_input_is_a_4xx_that_says_what_is_wrong(jp_fetch, root):
    code, msg = await api_error(
        jp_fetch,
        "jobs",
        method="POST",
        body={"spec": {**TRAIN, "config": {"training": {"epoch": 3}}}},
    )
    assert code == 400 and "training.epoch" in msg and "unknown field" in msg
    code, msg = await api_error(
        jp_fetch, "jobs", method="POST", body={"spec": {**TRAIN, "device": "tpu"}}
    )
    assert code == 400 and "device" in msg
    code, msg = await api_error(jp_fetch, "jobs", method="POST", body={"job": TRAIN})
    assert code == 400 and "spec" in msg
    code, _ = await api_error(jp_fetch, "jobs", "0123456789ab")
    assert code == 404
    code, msg = await api_error(jp_fetch, "jobs", status="sleeping")
    assert code == 400 and "status" in msg
    code, msg = await api_error(jp_fetch, "preview", path="cu.nc.missing")
    assert code == 404
    (root / "notes.txt").write_text("hello")
    code, msg = await api_error(jp_fetch, "preview", path="notes.txt")
    assert code == 415 and "no preview" in msg


@pytest.mark.parametrize(
    ("field", "value"),
    [("dataset", "../outside.nc"), ("dataset", "/etc/passwd"), ("out", "link/run")],
)
async def test_paths_outside_the_root_are_refused(jp_fetch, root, tmp_path_factory, field, value):
    outside = tmp_path_factory.mktemp("outside")
    (root / "link").symlink_to(outside)
    code, msg = await api_error(
        jp_fetch, "jobs", method="POST", body={"spec": {**TRAIN, field: value}}
    )
    assert (code == 403 and "root" in msg) or "'..'" in msg
    for path in ("../etc/passwd", "/etc/passwd", "link"):
        code, _ = await api_error(jp_fetch, "preview", path=path)
        assert code in (403, 404)
    code, _ = await api_error(jp_fetch, "files", kind="datasets", path="../")
    assert code == 403
    _, jobs = await api(jp_fetch, "jobs")
    assert jobs["jobs"] == []


async def test_fifty_concurrent_submissions_are_all_recorded_once(jp_fetch, root):
    """50 submissions at once (each starts a real worker that fails fast on a missing
    dataset): 50 jobs recorded, distinct, none lost."""
    bad = {**TRAIN, "dataset": "no-such-file.nc"}
    results = await asyncio.gather(
        *[
            api(jp_fetch, "jobs", method="POST", body={"spec": {**bad, "name": f"j{k}"}})
            for k in range(50)
        ]
    )
    ids = [job["id"] for code, job in results if code == 201]
    assert len(ids) == 50 == len(set(ids))
    _, jobs = await api(jp_fetch, "jobs")
    assert sorted(j["name"] for j in jobs["jobs"]) == sorted(f"j{k}" for k in range(50))
    for job_id in ids[:3]:
        done = await wait_done(jp_fetch, job_id)
        assert done["status"] == "failed" and "no-such-file.nc" in done["error"]


async def test_cancel_and_resume_through_the_api(jp_fetch, root):
    long = {**TRAIN, "config": {**TRAIN["config"], "training": {"epochs": 300, "batch_size": 2}}}
    _, job = await api(jp_fetch, "jobs", method="POST", body={"spec": long})
    deadline = time.time() + 120
    while True:
        _, ev = await api(jp_fetch, "jobs", job["id"], "events")
        if any(e["step"] == "epoch" for e in ev["events"]):
            break
        assert time.time() < deadline
        await asyncio.sleep(0.2)
    _, cancelled = await api(jp_fetch, "jobs", job["id"], "cancel", method="POST")
    assert cancelled["status"] == "cancelled"
    code, msg = await api_error(jp_fetch, "jobs", job["id"], "cancel", method="POST")
    assert code == 409 and "cancelled" in msg
    _, again = await api(jp_fetch, "jobs", job["id"], "resume", method="POST")
    assert again["status"] in ("queued", "running")
    _, stopped = await api(jp_fetch, "jobs", job["id"], "cancel", method="POST")
    assert stopped["status"] == "cancelled" and stopped["attempts"] >= 1


async def test_spec_schema_for_forms(jp_fetch, root):
    _, schema = await api(jp_fetch, "specs")
    kinds = set(schema["properties"]["spec"]["discriminator"]["mapping"])
    assert kinds == {
        "dataset_build",
        "train",
        "committee_train",
        "active_learn",
        "crystal_growth",
        "pimd",
    }


def test_dataset_notebook_template_runs_with_the_browser_widget(tmp_path, cu_dataset):
    """The "Open in notebook" template of a dataset-build job runs top to bottom on the
    real dataset and displays a DatasetBrowser."""
    import nbformat
    from nbclient import NotebookClient

    from nnp_lab.server.notebooks import job_notebook

    cu_dataset.save(tmp_path / "cu.nc")
    job = {
        "id": "0123abcd",
        "kind": "dataset_build",
        "name": "cu data",
        "status": "completed",
        "spec": {"kind": "dataset_build", "recipe": "cu.yaml"},
        "result": {"dataset": "cu.nc"},
    }
    path = tmp_path / job_notebook(job, tmp_path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("24 structures" in o.get("text", "") for o in outputs)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    with pytest.raises(InputError, match="notebooks open completed jobs"):
        job_notebook({**job, "status": "failed"}, tmp_path)
