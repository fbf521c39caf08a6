"""Evaluate transferability scores against ground truth, per dataset and averaged, as the papers tabulate it."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, short_list
from ..registry import COMMA_HINT, split_names
from ..metrics.base import SaturationWarning
from .measures import WEIGHTED_TAU_PROTOCOLS, kendall_tau, noise_tau, pearson, regret_at_k, rel_at_k, spearman, weighted_tau
from .tables import TRUTH_VALUE_COLUMNS, load_scores, load_truth, name_key
from .ties import metric_tolerance, no_ranking, paired_differences, snap_ties

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
        "rel": _selecting(rel_at_k, k),
        "regret": _selecting(regret_at_k, k),
    }
    return functions[choice]


def _selecting(measure: Callable[..., float], k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """rel@k or regret@k of one cell, undefined where the top k take every model: any score, noise included,
    would pick the best there."""
    def value(truth: np.ndarray, score: np.ndarray) -> float:
        if k >= len(truth):
            raise InvalidInputError(f"k={k} takes all {len(truth)} models compared: nothing is selected")
        return measure(truth, score, k=k)
    return value


@dataclass
class Evaluation:
    """Every (method, dataset, measure) value, plus the per-method ``mean`` and ``weighted_mean`` rows.

    ``results`` is the long table ``method, dataset, measure, value, se, n_tasks, note`` (what ``--out``
    writes): a dataset row's ``note`` says why its value is NaN ("no ranking: ..."); a mean row averages the
    ``n_tasks`` datasets where the value is defined, with ``se`` = std over them / sqrt(n_tasks) (the per-task
    spread of the mean). ``no_ranking`` lists the (method, dataset) cells whose scores are all tied (see
    ``modelrank.evaluate.ties``): every measure is NaN there and they are left out of the means. ``counts`` holds
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
    no_ranking: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["method", "dataset", "reason"]))

    def ranked_tasks(self) -> pd.Series:
        """Per method: "k of n" datasets on which its scores rank the models (not all tied)."""
        total = self.counts.groupby("method", sort=False).size()
        missing = self.no_ranking.groupby("method").size().reindex(total.index, fill_value=0)
        return (total - missing).astype(str) + " of " + total.astype(str)

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
        return (f"Evaluation(methods={short_list(self.methods, _REPR_ITEMS)}, "
                f"datasets={short_list(self.datasets, _REPR_ITEMS)}, measures={short_list(self.measures, _REPR_ITEMS)}, "
                f"warnings={len(self.warnings)}; mean {first}: {mean_text}"
                f"{', ...' if len(means) > _REPR_ITEMS else ''})")

    def to_csv(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.results.to_csv(path, index=False)


_REPR_ITEMS = 6


def _names(values: str | Iterable[str]) -> list[str]:
    """Names given as a list or as one comma-separated string ("kendall,spearman"), the way ``modelrank.score``
    takes metrics: a string iterated as a list gave its letters ("unknown measure(s) a, d, e, k, l, n")."""
    return split_names(values) if isinstance(values, str) else list(values)


def _selected(measures: str | Iterable[str]) -> list[str]:
    chosen = [m.strip().lower() for m in _names(measures)]
    aliases = {"weighted_tau": "weighted", "kendall_tau": "kendall", "rel_at_k": "rel", "regret_at_k": "regret"}
    chosen = [aliases.get(m, m) for m in chosen]
    unknown = sorted(set(chosen) - set(MEASURE_CHOICES))
    if unknown:
        # the labels the results carry (``measure_label``) name an option too: say which
        hints = [f"{m} is --tau {m.split('@')[0]} --k {m.split('@')[1]}" for m in unknown
                 if m.split("@")[0] in ("rel", "regret") and m.split("@")[-1].isdigit()]
        hints += [f"{m} is --tau weighted --protocol {m.removeprefix('weighted_tau_')}" for m in unknown
                  if m.removeprefix("weighted_tau_") in WEIGHTED_TAU_PROTOCOLS]
        raise InvalidInputError(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURE_CHOICES)}"
                                + (f" ({'; '.join(hints)})" if hints else ""))
    if not chosen:
        raise InvalidInputError("no measure selected")
    return list(dict.fromkeys(chosen))


def evaluate(
    scores: str | Path | pd.DataFrame,
    truth: str | Path | pd.DataFrame,
    measures: str | Iterable[str] = MEASURE_CHOICES,
    protocol: str = "scipy",
    k: int = 1,
    lower_is_better: str | Iterable[str] = (),
    duplicates: str = "error",
    score_duplicates: str = "error",
    truth_where: dict[str, str] | None = None,
    exclude_flagged: bool = True,
    truth_noise: float | str | None = None,
    tolerances: dict[str, tuple[float, float]] | None = None,
) -> Evaluation:
    """Compare every method's scores with the ground truth on every dataset both tables hold.

    ``scores`` / ``truth``: paths or DataFrames (layouts in ``modelrank.evaluate.tables``). ``measures``: a
    subset of ``MEASURE_CHOICES`` (a list or "kendall,spearman", as ``lower_is_better``). ``protocol``: the
    weighted-tau convention (``scipy`` or ``model_spider``, see ``weighted_tau``). ``k``: for rel@k and regret@k.
    ``lower_is_better``: methods whose raw score is better when lower (negated before ranking). ``duplicates``,
    ``truth_where``: see ``load_truth``; ``score_duplicates``: ``duplicates`` of ``load_scores``.

    Ties: a method's scores on a dataset are grouped by its tie tolerance (``tolerances[method]`` = (rtol,
    atol), else ``metric_tolerance``) and tied scores are made equal before any measure sees them; a dataset
    where all of them are tied gives no ranking (NaN for every measure, listed in ``no_ranking``).
    ``exclude_flagged``: leave out scores the metric flagged as saturated (with a warning), which ``score`` does
    not rank either; False keeps them (published protocols score every model). Either way a dataset where fewer
    than 2 of a method's scores are unsaturated gives no ranking.
    ``truth_noise``: the ground truth's noise, a std (e.g. of a seed-averaged accuracy over seeds) or the name of
    the truth column holding each value's std (``accuracy_std`` of benchmark records, divided by sqrt(n_seeds)
    there); adds the measure ``noise_tau``, which does not reward ordering models within that noise.

    Models are matched per dataset; a model present on one side only is left out (with a warning). The
    ``weighted_mean`` weights each dataset by max - mean of its ground truth over all its models in ``truth``.
    """
    if protocol not in WEIGHTED_TAU_PROTOCOLS:
        raise InvalidInputError(f"unknown weighted tau protocol {protocol!r}; choose one of {WEIGHTED_TAU_PROTOCOLS}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:  # True is an int: "rel@True"
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    if truth_where is not None and not isinstance(truth_where, Mapping):
        raise InvalidInputError(f"truth_where must be a dict {{column: value}}, not {truth_where!r}")
    for method, pair in (tolerances or {}).items():  # a bare rtol failed to unpack deep in the tie grouping
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v >= 0 for v in pair)):
            raise InvalidInputError(f"tolerances[{method!r}] must be a pair (rtol, atol) of numbers >= 0, not {pair!r}")
    choices = _selected(measures)
    noise_column = truth_noise if isinstance(truth_noise, str) else None
    if truth_noise is not None:
        if noise_column is None and not (np.isfinite(truth_noise) and truth_noise > 0):
            raise InvalidInputError(f"truth noise must be a positive number or a column name, got {truth_noise!r}")
        choices.append("noise_tau")
    score_table = load_scores(scores, duplicates=score_duplicates)
    truth_table = load_truth(truth, duplicates=duplicates, where=truth_where, noise_column=noise_column)
    if truth_table.attrs.get("rescaled") and truth_noise is not None and noise_column is None:
        # one number cannot be in percent on some datasets and a fraction on the others
        raise InvalidInputError(f"the truth is in percent on some datasets and in fractions on others, so a single "
                                f"truth noise ({truth_noise:g}) has no one scale; give the noise as a column "
                                "(--truth-noise COLUMN) or the truth on one scale")

    negated = set(_names(lower_is_better))
    unknown = sorted(negated - set(score_table["method"]))
    if unknown:
        raise InvalidInputError(f"lower-is-better method(s) not in the scores: {', '.join(map(repr, unknown))} "
                                f"({COMMA_HINT})")
    score_table.loc[score_table["method"].isin(negated), "score"] *= -1
    warnings: list[str] = [*score_table.attrs.get("blank", []), *truth_table.attrs.get("scale", [])]
    # Only saturation disqualifies a score: "not_converged" (LogME's default stops at the public codes' 11 steps,
    # most often on the weakest models) qualifies it, and leaving those out dropped the models it ranks last.
    flagged = score_table["flags"].str.split(";").apply(lambda raised: SaturationWarning.flag in raised)
    score_table = score_table.assign(saturated=flagged.to_numpy())

    truth_columns = ["dataset_key", "model_key", "truth", *(["noise"] if noise_column else [])]
    merged = score_table.merge(truth_table[truth_columns], on=["dataset_key", "model_key"])
    if merged.empty:
        raise InvalidInputError(
            "scores and truth have no (dataset, model) pair in common; scores have datasets "
            f"{sorted(score_table['dataset'].unique())} and truth has {sorted(truth_table['dataset'].unique())}"
        )

    # A truth column read as a method (one table given as --scores and --truth, or an accuracy column kept beside
    # the scores) would "rank" perfectly and win every mean.
    is_truth = (merged["score"] == merged["truth"]).groupby(merged["method"], sort=False).all()
    is_truth &= np.array([str(method).lower() in TRUTH_VALUE_COLUMNS for method in is_truth.index], dtype=bool)
    if is_truth.any():
        names = ", ".join(map(str, is_truth[is_truth].index))
        if is_truth.all():
            raise InvalidInputError(f"the scores' method(s) {names} are the ground truth itself (equal to it on every "
                                    "model): give a scores file with transferability scores")
        warnings.append(f"method(s) {names} equal the ground truth on every model (the truth's own column read as a "
                        "score): left out")
        score_table = score_table[~score_table["method"].isin(is_truth[is_truth].index)]
        merged = merged[~merged["method"].isin(is_truth[is_truth].index)]

    # Display names: the scores' first spelling of each dataset, in the order they appear there.
    # (dict(zip(...)) kept the last spelling, so the name shown depended on the rows' order.)
    first = score_table.drop_duplicates("dataset_key")
    display = dict(zip(first["dataset_key"], first["dataset"]))
    # one set: built anew for every dataset, it made 300 datasets take a minute
    judged = set(merged["dataset_key"])
    dataset_keys = [key for key in display if key in judged]

    taken = [display[key] for key in dataset_keys if key in (name_key(MEAN), name_key(WEIGHTED_MEAN))]
    if taken:  # its row would be one more "mean" of the results (and two rows of a column crashed the tables)
        raise InvalidInputError(f"dataset {taken[0]!r}: the results call their averages {MEAN} and {WEIGHTED_MEAN}; "
                                "rename that dataset in the scores and the truth")
    untruthful = [display[key] for key in display if key not in judged]
    if untruthful:
        warnings.append(f"scored dataset(s) {', '.join(untruthful)} have no ground truth: left out of every mean")
    labels = {choice: measure_label(choice, protocol, k) for choice in choices}
    functions = {choice: _measure_function(choice, protocol, k) for choice in choices if choice != "noise_tau"}
    rows: list[tuple[str, str, str, float, str]] = []
    unranked: list[tuple[str, str, str]] = []
    counts: list[tuple[str, str, int]] = []
    truth_models = truth_table.groupby("dataset_key")["model_key"].nunique()
    scored_models = score_table.groupby(["method", "dataset_key"])["model_key"].nunique()
    # Every (method, dataset) the scores hold where the dataset has ground truth, those without a model in common
    # too: going by the merged pairs alone dropped such a cell (and a method having no other) without a word.
    merged_cells = dict(tuple(merged.groupby(["method", "dataset_key"], sort=False)))
    scored_cells = score_table.loc[score_table["dataset_key"].isin(judged), ["method", "dataset_key"]].drop_duplicates()
    # a method scored only on datasets without ground truth (warned above) has no cell: no empty row in the tables
    methods = list(dict.fromkeys(scored_cells["method"]))
    for method, key in scored_cells.itertuples(index=False):
        cell = merged_cells.get((method, key), merged.iloc[:0])
        name = display[key]
        unscored = int(truth_models[key]) - len(cell)
        if unscored:
            warnings.append(f"{method} / {name}: {unscored} model(s) of the ground truth have no score and were left out")
        untrue = int(scored_models[(method, key)]) - len(cell)
        if untrue:
            warnings.append(f"{method} / {name}: {untrue} scored model(s) have no ground truth and were left out")
        # A saturated score sits at the metric's ceiling, above every model the metric still tells apart: as in
        # `score`, fewer than 2 unsaturated ones rank nothing (their order is the last bits at the ceiling, or one
        # winner by it), and the others are ranked among themselves unless --keep-flagged.
        saturated = cell["saturated"].to_numpy()
        unsaturated = len(cell) - int(saturated.sum())
        if saturated.any() and unsaturated >= 2:
            if exclude_flagged:
                flags = ", ".join(sorted(set(cell.loc[saturated, "flags"])))
                warnings.append(f"{method} / {name}: left out {int(saturated.sum())} flagged score(s) ({flags})")
                cell = cell[~saturated]
            else:
                warnings.append(f"{method} / {name}: {int(saturated.sum())} of {len(cell)} scores are saturated and "
                                "ranked at the metric's ceiling (--keep-flagged; `score` leaves them unranked)")
        counts.append((method, name, len(cell)))
        # Truths equal but for rounding (a mean computed two ways: 0.7 and 0.7000000000000001) are ties, as scores
        # are: no score is rewarded or punished for the order of their last bits.
        truth_values = snap_ties(cell["truth"].to_numpy())
        rtol, atol = (tolerances or {}).get(method) or metric_tolerance(method)
        score_values = snap_ties(cell["score"].to_numpy(), rtol, atol)
        # The reason quotes the scores as the table gives them, not as negated for --lower-is-better. One model
        # ranks nothing either (the "ranked" count said it did).
        if len(cell) < 2:
            reason = f"{'only 1 model' if len(cell) else 'no model'} in common with the ground truth"
        elif unsaturated < 2:
            reason = (f"saturated for all {len(cell)} models" if unsaturated == 0
                      else f"saturated for {len(cell) - unsaturated} of {len(cell)} models")
        elif np.ptp(truth_values) == 0:  # every measure is undefined (each refuses it): nothing to be judged on
            reason = f"the ground truth is constant ({truth_values[0]:.6g} for all {len(cell)} models)"
        else:
            reason = no_ranking(cell["score"].to_numpy() * (-1.0 if method in negated else 1.0), rtol, atol)
        if reason:
            unranked.append((method, name, reason))
            rows += [(method, name, labels[choice], np.nan, f"no ranking: {reason}") for choice in choices]
            continue
        noise = cell["noise"].to_numpy() if noise_column else truth_noise
        for choice in choices:
            note = ""
            try:
                if choice == "noise_tau":
                    value = noise_tau(truth_values, score_values, noise)
                else:
                    value = functions[choice](truth_values, score_values)
            except InvalidInputError as exc:
                warnings.append(f"{method} / {name} / {labels[choice]}: {exc}; left out of the means")
                value, note = np.nan, str(exc)
            rows.append((method, name, labels[choice], value, note))

    ranked = merged[~(merged["saturated"] & exclude_flagged)]  # the scores the measures saw
    if all(n < 2 for *_, n in counts):
        raise InvalidInputError("no (method, dataset) pair has 2 or more models in common between scores and truth")
    results = pd.DataFrame(rows, columns=["method", "dataset", "measure", "value", "note"])
    results = pd.concat([results, _means(results, truth_table, display)], ignore_index=True)
    # A dataset's own row counts itself where its value is defined: a count, written 1 (not 1.0) in CSV and JSON.
    results["n_tasks"] = results["n_tasks"].fillna(results["value"].notna().astype(int)).astype(np.int64)
    results = results[["method", "dataset", "measure", "value", "se", "n_tasks", "note"]]
    return Evaluation(
        results=results,
        pairs=ranked.assign(dataset=ranked["dataset_key"].map(display))[["method", "dataset", "model", "score", "truth"]],
        counts=pd.DataFrame(counts, columns=["method", "dataset", "n_models"]),
        methods=methods,
        datasets=[display[key] for key in dataset_keys],
        measures=list(labels.values()),
        lower_is_better={labels[c]: c in LOWER_IS_BETTER_MEASURES for c in choices},
        warnings=warnings,
        no_ranking=pd.DataFrame(unranked, columns=["method", "dataset", "reason"]),
    )


def compare_methods(evaluation: Evaluation, first: str, second: str) -> pd.DataFrame:
    """Paired comparison of two methods over the datasets where both have a value, one row per measure.

    ``diff`` = mean over datasets of (first - second), ``se`` its standard error (std of the differences /
    sqrt(n)), ``wins`` / ``losses`` / ``ties`` count the datasets where ``first`` is better / worse / equal (by
    the measure's direction), and ``beyond_2se`` says whether |diff| > 2 se, i.e. the difference is beyond
    the spread of the datasets rather than noise of which datasets were drawn.
    """
    for method in (first, second):
        if method not in evaluation.methods:
            raise InvalidInputError(f"no method {method!r} in this evaluation; have {', '.join(evaluation.methods)}")
    rows = []
    for measure in evaluation.measures:
        table = evaluation.table(measure)[evaluation.datasets]
        pair = table.loc[[first, second]].dropna(axis=1).to_numpy(dtype=np.float64)
        diff = paired_differences(pair[0], pair[1])  # a 1e-16 difference won every dataset, "beyond 2 SE" of 0
        better = -diff if evaluation.lower_is_better[measure] else diff
        n = diff.size
        se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        mean = float(diff.mean()) if n else np.nan
        rows.append({"measure": measure, "first": first, "second": second, "datasets": n, "diff": mean, "se": se,
                     "wins": int((better > 0).sum()), "losses": int((better < 0).sum()), "ties": int((better == 0).sum()),
                     "beyond_2se": bool(np.isfinite(se) and abs(mean) > 2 * se)})
    return pd.DataFrame(rows)


def dataset_weight(truth_values) -> float:
    """TransferGraph's weight of a dataset in its averages: max - mean of the ground truth over its models."""
    truth_values = np.asarray(truth_values, dtype=np.float64)
    return float(truth_values.max() - truth_values.mean())


def _means(results: pd.DataFrame, truth_table: pd.DataFrame, display: dict[str, str]) -> pd.DataFrame:
    """Per (method, measure): the plain mean over datasets (with its standard error over them) and the
    TransferGraph (max - mean)-weighted mean, both over the datasets where the value is defined."""
    spread = truth_table.groupby("dataset_key")["truth"].agg(dataset_weight)
    weights = {display[key]: value for key, value in spread.items() if key in display}
    # float weights: with no defined value at all (e.g. every truth constant) the empty map kept a string dtype
    cells = results.dropna(subset=["value"]).assign(weight=lambda f: f["dataset"].map(weights).astype(np.float64))
    grouped = cells.groupby(["method", "measure"], sort=False)
    # Every (method, measure) has its mean rows, NaN over 0 datasets where no value is defined: a method whose
    # scores rank nowhere had none in the CSV and JSON, while the table showed its empty means.
    every = results.groupby(["method", "measure"], sort=False).size()
    n_tasks = grouped["value"].count()
    standard_error = grouped["value"].std(ddof=1) / np.sqrt(n_tasks)
    plain = pd.DataFrame({"value": grouped["value"].mean(), "se": standard_error, "n_tasks": n_tasks})
    weighted_sum = (cells["value"] * cells["weight"]).groupby([cells["method"], cells["measure"]], sort=False).sum()
    weighted = pd.DataFrame({"value": weighted_sum / grouped["weight"].sum(), "n_tasks": n_tasks})
    parts = [part.reindex(every.index).fillna({"n_tasks": 0}).reset_index().assign(dataset=name)
             for part, name in ((plain, MEAN), (weighted, WEIGHTED_MEAN))]
    means = pd.concat(parts, ignore_index=True)
    totals = every.reindex(pd.MultiIndex.from_frame(means[["method", "measure"]])).to_numpy()
    means["note"] = [f"mean of {int(n)} of {int(t)} datasets" if n < t else "" for n, t in zip(means["n_tasks"], totals)]
    return means[["method", "dataset", "measure", "value", "se", "n_tasks", "note"]]
