"""Judge transferability scores against fine-tune ground truth: ranking measures and result tables."""

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
