"""Jobs: validated specs, a SQLite job store with progress events, detached workers."""

from nnp_lab.jobs.runner import JobManager
from nnp_lab.jobs.specs import KINDS, JobRequest, parse_spec
from nnp_lab.jobs.store import JobStore

__all__ = ["KINDS", "JobManager", "JobRequest", "JobStore", "parse_spec"]
