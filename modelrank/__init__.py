"""modelrank: rank pre-trained models by how well they will transfer to your task, without fine-tuning them all.

In Python: ``modelrank.score(features, "logme,leep")`` (a table of scores), ``modelrank.rank(...)`` (models best
first), ``modelrank.evaluate(scores, truth)`` (scores against fine-tune ground truth), and every metric as a plain
function of arrays, ``modelrank.metrics.logme(features, labels)``.
"""

__version__ = "0.1.0"

import importlib  # noqa: E402

from .errors import InvalidInputError, MissingResourceError, ModelrankError  # noqa: E402

# Imported on first use, so that `import modelrank` stays fast and imports no numpy: the command line's entry
# point (``modelrank._launch``) is then already running when the heavy imports start, and answers a Ctrl-C there.
_LAZY_NAMES = {"extract": "extraction", "load_features": "extraction", "load_model": "models",
               "load_dataset": "data", "score": "api", "rank": "api", "FeatureSet": "features"}
# `modelrank.evaluate(scores, truth)` calls the package (see modelrank/evaluate/__init__.py).
_LAZY_PACKAGES = ("evaluate", "metrics")


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    if name in _LAZY_PACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'modelrank' has no attribute {name!r}")


__all__ = ["FeatureSet", "InvalidInputError", "MissingResourceError", "ModelrankError", "__version__",
           "evaluate", "extract", "load_dataset", "load_features", "load_model", "metrics", "rank", "score"]
