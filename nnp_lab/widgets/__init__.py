"""Jupyter widgets (ipywidgets + nglview): thin views of library objects and job ids.

``StructureView`` (structures/trajectories coloured by a per-atom array),
``TrainingMonitor`` (live curves from a training callback, a server job id or metrics.nc),
``DatasetBrowser`` (table → 3D view), ``ActiveLearningDashboard`` (AL record → 3D view),
``CrystalGrowthView`` (a growing film with a time slider and its curves),
``HBondExplorer`` (an H-bonded dimer moved by sliders, its energies and energy map),
``KIEExplorer`` (KIE(T) with a temperature slider and ring polymers in 3D).
"""

from nnp_lab.widgets.browsers import ActiveLearningDashboard, DatasetBrowser
from nnp_lab.widgets.growth_view import CrystalGrowthView
from nnp_lab.widgets.hbond_explorer import HBondExplorer
from nnp_lab.widgets.kie_explorer import KIEExplorer
from nnp_lab.widgets.monitor import TrainingMonitor
from nnp_lab.widgets.structure_view import StructureView

__all__ = [
    "ActiveLearningDashboard",
    "CrystalGrowthView",
    "DatasetBrowser",
    "HBondExplorer",
    "KIEExplorer",
    "StructureView",
    "TrainingMonitor",
]
