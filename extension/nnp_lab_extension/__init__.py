"""Prebuilt JupyterLab extension of nnp-lab (the sidebar); the server API lives in nnp_lab."""

try:
    from ._version import __version__
except ImportError:  # not built yet
    __version__ = "dev"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "nnp-lab-extension"}]
