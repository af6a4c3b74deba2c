"""Panel dashboards (training and active-learning runs); ``nnp-lab dashboard PATH``."""

from nnp_lab.dashboards.app import dashboard, serve

__all__ = ["dashboard", "serve"]
