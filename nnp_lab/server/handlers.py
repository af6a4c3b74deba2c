"""REST handlers of the ``/nnp-lab/api/`` routes (see docs/openapi.yaml).

Every handler is a Jupyter ``APIHandler`` whose methods are ``@web.authenticated``
(token or cookie; XSRF checked by Jupyter for cookie-authenticated writes). Bad input is a
4xx JSON error ``{"message": ...}`` that says what is wrong; paths are relative to the
server root and may not leave it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from nnp_lab.errors import ConfigError, FileFormatError, InputError, NNPLabError, PathError
from nnp_lab.jobs.execute import safe_path
from nnp_lab.jobs.runner import JobManager
from nnp_lab.jobs.specs import JobRequest
from nnp_lab.jobs.store import FINAL, STATUSES
from nnp_lab.server.files import list_files, preview


def _dumps(data: Any) -> str:
    return json.dumps(data, default=str)


class _Base(APIHandler):
    @property
    def manager(self) -> JobManager:
        return self.settings["nnp_lab_manager"]

    @property
    def root(self) -> Path:
        return self.manager.root

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as exc:
            raise web.HTTPError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "request body must be a JSON object")
        return data

    def job_or_404(self, job_id: str) -> dict[str, Any]:
        try:
            return self.manager.store.get(job_id)
        except KeyError:
            raise web.HTTPError(404, f"no job {job_id!r}") from None

    def rel_path(self, name: str) -> Path:
        try:
            return safe_path(self.root, name)
        except InputError as exc:
            raise web.HTTPError(403, str(exc)) from None


class JobsHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        status = self.get_argument("status", None)
        if status is not None and status not in STATUSES:
            raise web.HTTPError(400, f"status must be one of {list(STATUSES)}, got {status!r}")
        self.finish(_dumps({"jobs": self.manager.store.list(status=status)}))

    @web.authenticated
    def post(self) -> None:
        body = self.body()
        if set(body) != {"spec"}:
            raise web.HTTPError(400, 'the request body must be {"spec": {...}} (a job spec)')
        try:
            job = self.manager.submit(body["spec"])
        except PathError as exc:
            raise web.HTTPError(403, str(exc)) from None
        except (ConfigError, InputError) as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.set_status(201)
        self.finish(_dumps(job))


class JobHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        self.finish(_dumps(self.job_or_404(job_id)))


class JobActionHandler(_Base):
    @web.authenticated
    def post(self, job_id: str, action: str) -> None:
        self.job_or_404(job_id)
        try:
            if action == "cancel":
                job = self.manager.cancel(job_id)
            else:
                job = self.manager.resume(job_id)
        except InputError as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.finish(_dumps(job))


class EventsHandler(_Base):
    @web.authenticated
    def get(self, job_id: str) -> None:
        job = self.job_or_404(job_id)
        try:
            since = int(self.get_argument("since", "0"))
        except ValueError:
            raise web.HTTPError(400, "since must be an integer event id") from None
        events = self.manager.store.events(job_id, since=since)
        last = events[-1]["id"] if events else since
        self.finish(
            _dumps(
                {
                    "status": job["status"],
                    "progress": job["progress"],
                    "events": events,
                    "last": last,
                }
            )
        )


class StreamHandler(_Base):
    """Server-sent events: every new event of a job, until the job ends."""

    poll_s = 0.5

    @web.authenticated
    async def get(self, job_id: str) -> None:
        self.job_or_404(job_id)
        since = int(self.get_argument("since", "0") or 0)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        store = self.manager.store
        try:
            while True:
                events = store.events(job_id, since=since)
                for e in events:
                    self.write(f"id: {e['id']}\nevent: {e['step']}\ndata: {_dumps(e)}\n\n")
                    since = e["id"]
                await self.flush()
                if not events and store.get(job_id)["status"] in FINAL:
                    break
                await asyncio.sleep(self.poll_s)
        except StreamClosedError:
            return
        self.finish()


class FilesHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        kind = self.get_argument("kind", "datasets")
        under = self.get_argument("path", "")
        base = self.rel_path(under) if under else self.root
        if not base.is_dir():
            raise web.HTTPError(404, f"no folder {under!r} under the server root")
        try:
            files = list_files(self.root, kind, base)
        except InputError as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.finish(_dumps({"kind": kind, "files": files}))


class PreviewHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        name = self.get_argument("path", None)
        if not name:
            raise web.HTTPError(400, "give the file to preview as ?path=<relative path>")
        path = self.rel_path(name)
        if not path.is_file():
            raise web.HTTPError(404, f"no file {name!r} under the server root")
        try:
            self.finish(_dumps({"path": name, **preview(path)}))
        except FileFormatError as exc:
            raise web.HTTPError(415, str(exc)) from None
        except NNPLabError as exc:
            raise web.HTTPError(400, str(exc)) from None


class NotebookHandler(_Base):
    """Make a notebook that loads a completed job's results; returns its path."""

    @web.authenticated
    def post(self, job_id: str) -> None:
        from nnp_lab.server.notebooks import job_notebook

        job = self.job_or_404(job_id)
        try:
            path = job_notebook(job, self.root)
        except InputError as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.set_status(201)
        self.finish(_dumps({"path": path}))


class SpecSchemaHandler(_Base):
    @web.authenticated
    def get(self) -> None:
        self.finish(_dumps(JobRequest.model_json_schema()))


ROUTES = [
    (r"jobs", JobsHandler),
    (r"jobs/(?P<job_id>[0-9a-f]{12})", JobHandler),
    (r"jobs/(?P<job_id>[0-9a-f]{12})/(?P<action>cancel|resume)", JobActionHandler),
    (r"jobs/(?P<job_id>[0-9a-f]{12})/events", EventsHandler),
    (r"jobs/(?P<job_id>[0-9a-f]{12})/stream", StreamHandler),
    (r"jobs/(?P<job_id>[0-9a-f]{12})/notebook", NotebookHandler),
    (r"files", FilesHandler),
    (r"preview", PreviewHandler),
    (r"specs", SpecSchemaHandler),
]
