"""modelrank: rank pre-trained models by how well they will transfer to your task, without fine-tuning them all."""

__version__ = "0.1.0"

from .errors import InvalidInputError, MissingResourceError, ModelrankError  # noqa: E402
from .features import FeatureSet  # noqa: E402


def __getattr__(name: str):
    # The torch-heavy API is imported on first use so that `import modelrank` stays fast.
    if name in {"extract", "load_features"}:
        from . import extraction as _extract

        return getattr(_extract, name)
    if name in {"load_model", "load_dataset"}:
        from . import data, models

        return getattr(models if name == "load_model" else data, name)
    raise AttributeError(f"module 'modelrank' has no attribute {name!r}")


__all__ = ["FeatureSet", "InvalidInputError", "MissingResourceError", "ModelrankError", "__version__",
           "extract", "load_dataset", "load_features", "load_model"]
