"""Judge transferability scores against fine-tune ground truth: ranking measures and result tables.

Calling the package runs ``evaluate``: ``modelrank.evaluate(scores, truth)``. Its names are imported on first use:
`score` needs only the tie rule (``ties``), not the measures' scipy.stats and the tables (a second to import).
"""

import importlib
import sys
import types

#: name -> the module of this package that defines it
_EXPORTS = {
    **dict.fromkeys(("MEASURE_CHOICES", "Evaluation", "evaluate"), "evaluation"),
    **dict.fromkeys(("metric_tolerance", "no_ranking", "snap_ties", "tie_groups", "tie_ranks"), "ties"),
    **dict.fromkeys(("MEASURES", "WEIGHTED_TAU_PROTOCOLS", "kendall_tau", "noise_tau", "pearson", "regret_at_k",
                     "rel_at_k", "spearman", "weighted_tau"), "measures"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _CallablePackage(types.ModuleType):
    """``modelrank.evaluate(scores, truth, ...)`` is ``modelrank.evaluate.evaluate``: the name a notebook user
    tries first is the package's main function, while ``modelrank.evaluate.weighted_tau`` etc. stay reachable."""

    def __call__(self, *args, **kwargs):
        from .evaluation import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
