"""Transferability metrics: plain functions ``f(features, labels, ...) -> float``, all in one registry.

Importing this package registers every metric; ``METRICS`` lists them and ``compute_metric`` runs one on a
``FeatureSet`` after checking its declared inputs. Every registered metric is also an attribute of this package
under its registered name: ``modelrank.metrics.logme(features, labels)``, ``modelrank.metrics.nleep(...)``,
``modelrank.metrics.ped_sfda(...)``.

Where a metric shares its name with the module that defines it (``logme``, ``leep``, ``sfda`` ...), the package
attribute is the function; the module stays importable by its dotted path
(``from modelrank.metrics.logme import max_evidence``, ``importlib.import_module("modelrank.metrics.logme")``).
"""

from .base import METRICS, INPUT_NAMES, MetricSpec, compute_metric, missing_inputs, register_metric, score_zoo

# Metric modules register themselves on import. (one import line per module, keep sorted)
from . import emms  # noqa: F401
from . import gbc  # noqa: F401
from . import hscore  # noqa: F401
from . import leep  # noqa: F401
from . import lfc  # noqa: F401
from . import logme  # noqa: F401
from . import ncti  # noqa: F401
from . import otce  # noqa: F401
from . import pactran  # noqa: F401
from . import parc  # noqa: F401
from . import ped  # noqa: F401
from . import probes  # noqa: F401
from . import sfda  # noqa: F401
from . import transrate  # noqa: F401

# Every metric function by its registered name. This runs after every metric module is imported: a module's first
# import sets the package attribute of its name back to the module.
globals().update({entry.name: entry.obj.fn for entry in METRICS})

__all__ = ["METRICS", "INPUT_NAMES", "MetricSpec", "compute_metric", "missing_inputs", "register_metric", "score_zoo",
           *(entry.name for entry in METRICS)]
