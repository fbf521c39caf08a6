"""Judge transferability scores against fine-tune ground truth: ranking measures and result tables.

Calling the package runs ``evaluate``: ``modelrank.evaluate(scores, truth)``.
"""

import sys
import types

from .evaluation import MEASURE_CHOICES, Evaluation, evaluate
from .ties import metric_tolerance, no_ranking, snap_ties, tie_groups, tie_ranks
from .measures import (
    MEASURES,
    WEIGHTED_TAU_PROTOCOLS,
    kendall_tau,
    noise_tau,
    pearson,
    regret_at_k,
    rel_at_k,
    spearman,
    weighted_tau,
)

__all__ = [
    "MEASURE_CHOICES",
    "Evaluation",
    "evaluate",
    "MEASURES",
    "WEIGHTED_TAU_PROTOCOLS",
    "kendall_tau",
    "noise_tau",
    "pearson",
    "regret_at_k",
    "rel_at_k",
    "spearman",
    "weighted_tau",
    "metric_tolerance",
    "no_ranking",
    "snap_ties",
    "tie_groups",
    "tie_ranks",
]


class _CallablePackage(types.ModuleType):
    """``modelrank.evaluate(scores, truth, ...)`` is ``modelrank.evaluate.evaluate``: the name a notebook user
    tries first is the package's main function, while ``modelrank.evaluate.weighted_tau`` etc. stay reachable."""

    def __call__(self, *args, **kwargs) -> Evaluation:
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
