"""Evaluate transferability scores against ground truth, per dataset and averaged, as the papers tabulate it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .measures import WEIGHTED_TAU_PROTOCOLS, kendall_tau, pearson, regret_at_k, rel_at_k, spearman, weighted_tau
from .tables import load_scores, load_truth

# What `--tau` selects. Each choice becomes one measure label in the results (see `measure_label`).
MEASURE_CHOICES = ("weighted", "kendall", "spearman", "pearson", "rel", "regret")
MEAN = "mean"
# TransferGraph (ICDE'24) averages over datasets weighted by (max truth - mean truth) of each dataset, so
# datasets where picking the right model matters more count more (result_analysis/*_correlation.csv "average").
WEIGHTED_MEAN = "weighted_mean"
LOWER_IS_BETTER_MEASURES = ("regret",)


def measure_label(choice: str, protocol: str = "scipy", k: int = 1) -> str:
    """The name a selected measure carries in result tables, e.g. ``weighted_tau_model_spider``, ``rel@3``."""
    if choice == "weighted":
        return "weighted_tau" if protocol == "scipy" else f"weighted_tau_{protocol}"
    if choice in ("rel", "regret"):
        return f"{choice}@{k}"
    return choice


def _measure_function(choice: str, protocol: str, k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    functions: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "weighted": lambda t, s: weighted_tau(t, s, protocol=protocol),
        "kendall": kendall_tau,
        "spearman": spearman,
        "pearson": pearson,
        "rel": lambda t, s: rel_at_k(t, s, k=k),
        "regret": lambda t, s: regret_at_k(t, s, k=k),
    }
    return functions[choice]


@dataclass
class Evaluation:
    """Every (method, dataset, measure) value, plus the per-method ``mean`` and ``weighted_mean`` rows.

    ``results`` is the long table ``method, dataset, measure, value`` (what ``--out`` writes); ``counts`` holds
    how many models were compared per (method, dataset); ``pairs`` the aligned ``method, dataset, model, score,
    truth`` rows behind every cell (score as ranked, i.e. after negation); ``warnings`` lists cells that could
    not be computed and models that were left out, so no value is dropped silently.
    """

    results: pd.DataFrame
    pairs: pd.DataFrame
    counts: pd.DataFrame
    methods: list[str]
    datasets: list[str]
    measures: list[str]
    lower_is_better: dict[str, bool]
    warnings: list[str] = field(default_factory=list)

    def table(self, measure: str) -> pd.DataFrame:
        """Methods x (datasets, mean, weighted_mean) for one measure label, in the papers' layout."""
        if measure not in self.measures:
            raise InvalidInputError(f"no measure {measure!r} in this evaluation; have {', '.join(self.measures)}")
        part = self.results[self.results["measure"] == measure]
        wide = part.pivot(index="method", columns="dataset", values="value")
        return wide.reindex(index=self.methods, columns=[*self.datasets, MEAN, WEIGHTED_MEAN])

    def __repr__(self) -> str:
        # Names and the mean of the first measure, not the tables (print ``table(measure)`` for those).
        first = self.measures[0]
        means = self.table(first)[MEAN]
        mean_text = ", ".join(f"{method}={value:.3f}" for method, value in means.head(_REPR_ITEMS).items())
        return (f"Evaluation(methods={_short_list(self.methods)}, datasets={_short_list(self.datasets)}, "
                f"measures={_short_list(self.measures)}, warnings={len(self.warnings)}; mean {first}: {mean_text}"
                f"{', ...' if len(means) > _REPR_ITEMS else ''})")

    def to_csv(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.results.to_csv(path, index=False)


_REPR_ITEMS = 6


def _short_list(names: list[str]) -> str:
    shown = ", ".join(names[:_REPR_ITEMS])
    return f"[{shown}, ... {len(names)} in all]" if len(names) > _REPR_ITEMS else f"[{shown}]"


def _selected(measures: Iterable[str]) -> list[str]:
    chosen = [m.strip().lower() for m in measures]
    aliases = {"weighted_tau": "weighted", "kendall_tau": "kendall", "rel_at_k": "rel", "regret_at_k": "regret"}
    chosen = [aliases.get(m, m) for m in chosen]
    unknown = sorted(set(chosen) - set(MEASURE_CHOICES))
    if unknown:
        raise InvalidInputError(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURE_CHOICES)}")
    if not chosen:
        raise InvalidInputError("no measure selected")
    return list(dict.fromkeys(chosen))


def evaluate(
    scores: str | Path | pd.DataFrame,
    truth: str | Path | pd.DataFrame,
    measures: Iterable[str] = MEASURE_CHOICES,
    protocol: str = "scipy",
    k: int = 1,
    lower_is_better: Iterable[str] = (),
    duplicates: str = "error",
    truth_where: dict[str, str] | None = None,
) -> Evaluation:
    """Compare every method's scores with the ground truth on every dataset both tables hold.

    ``scores`` / ``truth``: paths or DataFrames (layouts in ``modelrank.evaluate.tables``). ``measures``: a
    subset of ``MEASURE_CHOICES``. ``protocol``: the weighted-tau convention (``scipy`` or ``model_spider``,
    see ``weighted_tau``). ``k``: for rel@k and regret@k. ``lower_is_better``: methods whose raw score is
    better when lower (negated before ranking). ``duplicates``, ``truth_where``: see ``load_truth``.

    Models are matched per dataset; a model present on one side only is left out (with a warning). The
    ``weighted_mean`` weights each dataset by max - mean of its ground truth over all its models in ``truth``.
    """
    if protocol not in WEIGHTED_TAU_PROTOCOLS:
        raise InvalidInputError(f"unknown weighted tau protocol {protocol!r}; choose one of {WEIGHTED_TAU_PROTOCOLS}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    choices = _selected(measures)
    score_table = load_scores(scores)
    truth_table = load_truth(truth, duplicates=duplicates, where=truth_where)

    negated = set(lower_is_better)
    unknown = sorted(negated - set(score_table["method"]))
    if unknown:
        raise InvalidInputError(f"lower-is-better method(s) not in the scores: {', '.join(unknown)}")
    score_table.loc[score_table["method"].isin(negated), "score"] *= -1

    merged = score_table.merge(truth_table[["dataset_key", "model_key", "truth"]], on=["dataset_key", "model_key"])
    if merged.empty:
        raise InvalidInputError(
            "scores and truth have no (dataset, model) pair in common; scores have datasets "
            f"{sorted(score_table['dataset'].unique())} and truth has {sorted(truth_table['dataset'].unique())}"
        )

    # Display names: the scores' first spelling of each dataset, in the order they appear there.
    display = dict(zip(score_table["dataset_key"], score_table["dataset"]))
    display = {key: display[key] for key in dict.fromkeys(score_table["dataset_key"])}
    methods = list(dict.fromkeys(score_table["method"]))
    dataset_keys = [key for key in display if key in set(merged["dataset_key"])]

    warnings: list[str] = list(score_table.attrs.get("blank", []))
    untruthful = [display[key] for key in display if key not in set(merged["dataset_key"])]
    if untruthful:
        warnings.append(f"scored dataset(s) {', '.join(untruthful)} have no ground truth: left out of every mean")
    labels = {choice: measure_label(choice, protocol, k) for choice in choices}
    functions = {choice: _measure_function(choice, protocol, k) for choice in choices}
    rows: list[tuple[str, str, str, float]] = []
    counts: list[tuple[str, str, int]] = []
    truth_models = truth_table.groupby("dataset_key")["model_key"].nunique()
    scored_models = score_table.groupby(["method", "dataset_key"])["model_key"].nunique()
    for (method, key), cell in merged.groupby(["method", "dataset_key"], sort=False):
        name = display[key]
        counts.append((method, name, len(cell)))
        unscored = int(truth_models[key]) - len(cell)
        if unscored:
            warnings.append(f"{method} / {name}: {unscored} model(s) of the ground truth have no score and were left out")
        untrue = int(scored_models[(method, key)]) - len(cell)
        if untrue:
            warnings.append(f"{method} / {name}: {untrue} scored model(s) have no ground truth and were left out")
        if len(cell) < 2:
            warnings.append(f"{method} / {name}: only {len(cell)} model(s) in common, nothing to rank")
            continue
        truth_values = cell["truth"].to_numpy()
        score_values = cell["score"].to_numpy()
        for choice in choices:
            try:
                value = functions[choice](truth_values, score_values)
            except InvalidInputError as exc:
                warnings.append(f"{method} / {name} / {labels[choice]}: {exc}; left out of the means")
                value = np.nan
            rows.append((method, name, labels[choice], value))

    if not rows:
        raise InvalidInputError("no (method, dataset) pair has 2 or more models in common between scores and truth")
    results = pd.DataFrame(rows, columns=["method", "dataset", "measure", "value"])
    results = pd.concat([results, _means(results, truth_table, display)], ignore_index=True)
    return Evaluation(
        results=results,
        pairs=merged.assign(dataset=merged["dataset_key"].map(display))[["method", "dataset", "model", "score", "truth"]],
        counts=pd.DataFrame(counts, columns=["method", "dataset", "n_models"]),
        methods=methods,
        datasets=[display[key] for key in dataset_keys],
        measures=list(labels.values()),
        lower_is_better={labels[c]: c in LOWER_IS_BETTER_MEASURES for c in choices},
        warnings=warnings,
    )


def dataset_weight(truth_values) -> float:
    """TransferGraph's weight of a dataset in its averages: max - mean of the ground truth over its models."""
    truth_values = np.asarray(truth_values, dtype=np.float64)
    return float(truth_values.max() - truth_values.mean())


def _means(results: pd.DataFrame, truth_table: pd.DataFrame, display: dict[str, str]) -> pd.DataFrame:
    """Per (method, measure): the plain mean over datasets and the TransferGraph (max - mean)-weighted mean."""
    spread = truth_table.groupby("dataset_key")["truth"].agg(dataset_weight)
    weights = {display[key]: value for key, value in spread.items() if key in display}
    cells = results.dropna(subset=["value"]).assign(weight=lambda f: f["dataset"].map(weights))
    grouped = cells.groupby(["method", "measure"], sort=False)
    plain = grouped["value"].mean().rename("value").reset_index().assign(dataset=MEAN)
    weighted_sum = (cells["value"] * cells["weight"]).groupby([cells["method"], cells["measure"]], sort=False).sum()
    weighted = (weighted_sum / grouped["weight"].sum()).rename("value").reset_index().assign(dataset=WEIGHTED_MEAN)
    return pd.concat([plain, weighted], ignore_index=True)[["method", "dataset", "measure", "value"]]
