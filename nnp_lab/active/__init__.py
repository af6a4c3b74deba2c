"""Committee active learning: explore with the committee, ask the reference where it
disagrees, retrain — with the reference running as Dask tasks.

Modules: :mod:`~nnp_lab.active.members` (committee training), :mod:`~nnp_lab.active.uncertainty`
(predictions with spread, calibration), :mod:`~nnp_lab.active.explore` (MD explorers with the
stop-and-ask rule), :mod:`~nnp_lab.active.select` (threshold + farthest-point diversity),
:mod:`~nnp_lab.active.oracle` (Dask execution with a label cache), :mod:`~nnp_lab.active.loop`
(the persisted loop), :mod:`~nnp_lab.active.record` (the per-iteration record),
:mod:`~nnp_lab.active.efficiency` (active vs random selection from one candidate pool).
"""

from nnp_lab.active.explore import Exploration, ExploreConfig, explore
from nnp_lab.active.loop import ActiveLearner, ActiveLearningConfig, run_active_learning
from nnp_lab.active.members import CommitteeConfig, train_committee
from nnp_lab.active.oracle import DaskOracle, OracleConfig
from nnp_lab.active.select import fingerprints, select_candidates
from nnp_lab.active.uncertainty import Calibration, calibrate, committee_predictions

__all__ = [
    "ActiveLearner",
    "ActiveLearningConfig",
    "Calibration",
    "CommitteeConfig",
    "DaskOracle",
    "Exploration",
    "ExploreConfig",
    "OracleConfig",
    "calibrate",
    "committee_predictions",
    "explore",
    "fingerprints",
    "run_active_learning",
    "select_candidates",
    "train_committee",
]
