"""Evaluation protocols for learned rankers: cold start, partially observed, and the graph seed's mixed masking.

* Cold start: the held-out tasks' accuracy rows never reach ``fit`` (``Records.without_tasks``; checked
  here before every fit). Folds: leave-one-task-out, k task folds, or leave-one-domain-out (group by a
  task-metadata column).
* Partially observed: as cold start, then ``k_observed`` random models of the held-out task are revealed
  to ``predict``; the measures are computed on the UNOBSERVED models only ("partial"). The graph seed's
  scgat.py instead fills the observed entries with their true values and correlates over all models, which
  inflates the numbers; that variant is reported too, labelled "partial_filled (seed protocol)".
* Seed mixture (``seed_mixture``): scgat.py's split of DomainNet: tasks in 10 blocks observe 90%, 80%, ...,
  0% of their models; the learner is fitted on all observed entries at once and predicts the rest. Reported
  as "seed_filled" (the seed's number: Pearson per task with observed entries filled in, averaged), "unobserved"
  (measured on unobserved models only) and "cold" (the block with nothing observed).

Measures come from ``modelrank.evaluate.measures``; weighted tau uses scipy's default (symmetric) convention
as TransferGraph does, or Model Spider's (``tau_protocol="model_spider"``) for comparisons with its tables. A measure that is undefined on a task (constant ground truth) is left out of that
task's average and counted in ``n``.
"""

from __future__ import annotations

import time
from functools import partial
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, ModelrankError
from ..evaluate.evaluation import dataset_weight
from ..evaluate.measures import pearson, regret_at_k, rel_at_k, spearman, weighted_tau
from ..evaluate.ties import paired_differences, snap_ties
from .base import PREDICTION_ATOL, PREDICTION_RTOL, Learner
from .records import Records

REPORTED_MEASURES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "weighted_tau": weighted_tau,  # called with the evaluation's ``tau_protocol``
    "pearson": pearson,
    "spearman": spearman,
    "rel@1": lambda t, s: rel_at_k(t, s, 1),
    "regret@1": lambda t, s: regret_at_k(t, s, 1),
}
PROTOCOLS = ("cold_start", "partial")


@dataclass
class EvalResult:
    """Per-task measures (one row per task and protocol variant) plus timing."""

    per_task: pd.DataFrame
    fit_seconds: list[float] = field(default_factory=list)
    rank_seconds: list[float] = field(default_factory=list)
    #: held-out tasks (or a task's "partial" variant, keyed "TASK (partial)") left out, with the reason
    left_out: dict[str, str] = field(default_factory=dict)

    def summary(self, weighted: bool = False) -> pd.DataFrame:
        """Mean of each measure per protocol variant (``weighted``: weights = max - mean truth of the task, the
        TransferGraph tables' "average"), with the number of tasks where it was defined."""
        rows = []
        for variant, group in self.per_task.groupby("protocol", sort=False):
            row = {"protocol": variant}
            for m in REPORTED_MEASURES:
                values = group[m].to_numpy(dtype=float)
                ok = np.isfinite(values)
                w = group["spread"].to_numpy(dtype=float)[ok] if weighted else np.ones(ok.sum())
                row[m] = float(np.sum(values[ok] * w) / np.sum(w)) if ok.any() and np.sum(w) > 0 else np.nan
            row["n"] = int(np.isfinite(group["pearson"].to_numpy(dtype=float)).sum())
            row["tasks"] = len(group)
            rows.append(row)
        return pd.DataFrame(rows).set_index("protocol")


def measure_all(truth: np.ndarray, score: np.ndarray, all_truth: np.ndarray | None = None,
                tau_protocol: str = "scipy") -> dict[str, float]:
    """Every measure on one task; NaN (and counted as undefined) where the measure raises on this task.

    ``spread`` is TransferGraph's weight of the task (max - mean of the truth over all its models,
    ``all_truth`` when only some models are measured). ``tau_protocol``: the weighted-tau convention, "scipy"
    (symmetric, TransferGraph's) or "model_spider" (``weightedtau(truth, score, rank=None)``, Model Spider's).
    Predictions equal within precision are ties (``modelrank.evaluate.ties``, as in ``evaluate``): their order
    in the last bits is never rewarded, and predictions that are all tied rank nothing (NaN). So are truths (a mean
    over seeds computed in another order)."""
    truth, score = snap_ties(truth), snap_ties(score, PREDICTION_RTOL, PREDICTION_ATOL)
    out = {}
    for name, fn in REPORTED_MEASURES.items():
        try:
            out[name] = fn(truth, score, protocol=tau_protocol) if name == "weighted_tau" else fn(truth, score)
        except InvalidInputError:
            out[name] = np.nan
    out["spread"] = dataset_weight(truth if all_truth is None else all_truth)
    out["n_models"] = int(truth.size)
    return out


#: what ``task_folds`` holds out together: one task (or ``n_folds`` random groups of tasks), or one domain
HELD_OUT_GROUPS = ("task", "domain")


def task_folds(records: Records, by: str = "task", n_folds: int | None = None, column: str | None = None,
               tasks: Iterable[str] | None = None, seed: int = 0) -> list[list[str]]:
    """Groups of held-out tasks. ``by="task"``: one task per fold (leave-one-task-out) or ``n_folds`` random
    groups; ``by="domain"``: one fold per value of the task-metadata ``column`` (default: the records' own
    ``info["domain_column"]``, else ``"domain"``). ``tasks``: which tasks are
    ever held out (default: ``Records.rankable_tasks``, every task with records of 2 or more models)."""
    candidates = list(tasks) if tasks is not None else records.rankable_tasks()
    for t in candidates:
        records.check_rankable(t)
    if by == "task":
        if n_folds is None or n_folds >= len(candidates):
            return [[t] for t in candidates]
        if n_folds < 2:
            raise InvalidInputError("n_folds must be at least 2")
        order = np.random.default_rng(seed).permutation(len(candidates))
        return [[candidates[i] for i in sorted(chunk)] for chunk in np.array_split(order, n_folds)]
    if by == "domain":
        # "domain", as `spider eval --by` says: metadata from a CSV (--task-meta) or a benchmark's tasks.csv named
        # no column, and found none
        column = column or records.info.get("domain_column", "domain")
        if records.task_meta is None or column not in records.task_meta.columns:
            have = ("the records have no task metadata" if records.task_meta is None
                    else f"it has {', '.join(map(str, records.task_meta.columns))}")
            raise InvalidInputError(f"leave-one-domain-out needs a task metadata column {column!r} naming each task's "
                                    f"domain; {have}")
        domains = records.task_meta.loc[candidates, column].astype(str)
        return [sorted(domains.index[domains == d]) for d in sorted(domains.unique())]
    raise InvalidInputError(f"by must be {' or '.join(map(repr, HELD_OUT_GROUPS))}, not {by!r}")


class FoldStore(Protocol):
    """Where ``evaluate`` keeps each finished fold, to resume an interrupted evaluation (``spider.kept``)."""

    def get(self, fold: int) -> tuple[EvalResult, dict] | None:
        """The fold's result and the random state after it, if it was kept."""

    def put(self, fold: int, result: EvalResult, random_state: dict) -> None: ...


def evaluate(factory: Callable[[], Learner], records: Records, protocol: str | Sequence[str] = "cold_start",
             folds: list[list[str]] | None = None, k_observed: int = 3, seed: int = 0, tau_protocol: str = "scipy",
             progress: Callable[[], None] | None = None, kept_folds: FoldStore | None = None) -> EvalResult:
    """Fit one learner per fold on the records without that fold's tasks, rank the held-out tasks, measure.

    ``protocol``: "cold_start", "partial" or both (one fit serves both). "partial" reveals ``k_observed``
    random models per held-out task (needs at least k + 2 models on the task so that two unobserved ones
    remain to rank). ``tau_protocol``: see ``measure_all``; ``progress()`` is called after each fold.
    A held-out task with fewer than 2 models that the records outside its fold know (a learner fitted there cannot
    rank it), or too few for "partial", is left out (of that protocol), as ``Records.rankable_tasks`` leaves out
    tasks of one model: ``EvalResult.left_out`` says which and why. Raises when nothing is left to evaluate.
    ``kept_folds``: folds it holds are read, not fitted (with the random state the partial protocol's draws had
    after them, so the later folds draw the same models), and each fold evaluated is given to it.
    """
    protocols = [protocol] if isinstance(protocol, str) else list(protocol)
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise InvalidInputError(f"protocol must be among {PROTOCOLS}, not {protocol!r}")
    folds = folds if folds is not None else task_folds(records)
    measure = partial(measure_all, tau_protocol=tau_protocol)
    rng = np.random.default_rng(seed)
    # task -> why it is left out, of every protocol / of "partial" only; checked before the first fit (such a task
    # refused the whole evaluation, after the folds before it)
    unranked: dict[str, str] = {}
    no_partial: dict[str, str] = {}
    for held in folds:
        trained = set(records.without_tasks(held).models)  # the models a learner fitted without the fold knows
        if not trained:  # e.g. a single task: the cause is the fold, not its tasks' models
            raise InvalidInputError(f"held-out evaluation trains on the tasks outside each fold; without "
                                    f"{_listed(held)} no task with records is left to train on")
        for task in held:
            truth = records.check_rankable(task)
            known = int(truth.index.isin(trained).sum())
            if known < 2:  # predict's "ranking needs at least 2 models, got 0" named neither task nor cause
                unranked[task] = (f"{known} of its {truth.size} models have records on the other tasks, so a learner "
                                  "trained without it cannot rank them")
            elif "partial" in protocols and known < k_observed + 2:
                no_partial[task] = (f"{known} of its models are known to the learner; partial with k={k_observed} "
                                    f"needs {k_observed + 2}")
    left_out = {**unranked, **{f"{task} (partial)": reason for task, reason in no_partial.items()}}
    if not any(task not in unranked and (p != "partial" or task not in no_partial)
               for held in folds for task in held for p in protocols):
        first, reason = next(iter(left_out.items()))
        raise InvalidInputError(f"no held-out task can be evaluated: {first}: {reason}"
                                + (f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""))
    rows, fit_s, rank_s = [], [], []
    for fold_id, held in enumerate(folds):
        ranked = [task for task in held if task not in unranked]
        if not ranked:  # every task of the fold is left out: nothing to fit for
            if progress is not None:
                progress()
            continue
        kept = None if kept_folds is None else kept_folds.get(fold_id)
        if kept is not None:
            part, random_state = kept
            rows.extend(part.per_task.to_dict("records"))
            fit_s.extend(part.fit_seconds)
            rank_s.extend(part.rank_seconds)
            rng.bit_generator.state = random_state
            if progress is not None:
                progress()
            continue
        first_row, first_rank = len(rows), len(rank_s)
        train = records.without_tasks(held)  # the whole fold, as the check above assumed
        leaked = set(train.table["dataset"]) & set(held)
        if leaked:  # the guarantee the protocol rests on
            raise ModelrankError(f"held-out task(s) {sorted(leaked)} leaked into the training records")
        start = time.perf_counter()
        try:
            learner = factory().fit(train)
        except InvalidInputError as exc:  # the learner's own refusal of the records left without the fold
            raise InvalidInputError(f"held-out evaluation trains on the tasks outside each fold; without "
                                    f"{_listed(held)}: {exc}") from exc
        fit_s.append(time.perf_counter() - start)
        for task in ranked:
            truth = records.check_rankable(task)
            truth = truth[truth.index.isin(learner.models)]  # a model known only from this task cannot be ranked
            base = {"fold": fold_id, "task": task}
            if "cold_start" in protocols:
                start = time.perf_counter()
                score = learner.predict(task, models=list(truth.index))
                rank_s.append(time.perf_counter() - start)
                rows.append({**base, "protocol": "cold_start", **measure(truth.to_numpy(), score.to_numpy())})
            if "partial" not in protocols or task in no_partial:
                continue
            observed = truth.iloc[rng.choice(truth.size, k_observed, replace=False)]
            start = time.perf_counter()
            score = learner.predict(task, observed=observed, models=list(truth.index))
            rank_s.append(time.perf_counter() - start)
            hidden = ~truth.index.isin(observed.index)
            rows.append({**base, "protocol": "partial",
                         **measure(truth.to_numpy()[hidden], score.to_numpy()[hidden], truth.to_numpy())})
            filled = score.copy()
            filled.loc[observed.index] = observed
            rows.append({**base, "protocol": "partial_filled (seed protocol)",
                         **measure(truth.to_numpy(), filled.to_numpy())})
        if kept_folds is not None:
            kept_folds.put(fold_id, EvalResult(pd.DataFrame(rows[first_row:]), fit_s[-1:], rank_s[first_rank:]),
                           rng.bit_generator.state)
        if progress is not None:
            progress()
    return EvalResult(pd.DataFrame(rows), fit_s, rank_s, left_out)


def _listed(tasks: list[str]) -> str:
    """A fold's tasks for a message: the first three, then "..."."""
    return ", ".join(tasks[:3]) + (" ..." if len(tasks) > 3 else "")


SEED_MISSING_RATIOS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)


def seed_mixture_split(records: Records, seed: int) -> tuple[Records, dict[str, list[str]]]:
    """scgat.py's split: tasks shuffled into 10 equal blocks; a task in block b has int(n_models x ratio_b) of
    its models observed (ratios 0.9 ... 0.0), chosen at random. Returns (training records, observed models per task)."""
    rng = np.random.default_rng(seed)
    tasks = records.record_tasks
    blocks = np.array_split(rng.permutation(len(tasks)), len(SEED_MISSING_RATIOS))
    observed: dict[str, list[str]] = {}
    for ratio, block in zip(SEED_MISSING_RATIOS, blocks):
        for i in block:
            truth = records.truth(tasks[i])
            k = int(truth.size * ratio)
            observed[tasks[i]] = sorted(truth.index[rng.choice(truth.size, k, replace=False)])
    keep = pd.Series([m in set(observed[t]) for t, m in zip(records.table["dataset"], records.table["model"])])
    # a task of which nothing is observed (the 0.0 block, or few models) is held out: still known by name, as the
    # held-out tasks of a fold are; it had vanished from the training records, and ranking it raised "unknown task"
    unobserved = [task for task, models in observed.items() if not models]
    return records.with_rows(records.table[keep.to_numpy()].reset_index(drop=True)).without_tasks(unobserved), observed


def seed_mixture(factory: Callable[[], Learner], records: Records, seed: int = 0, tau_protocol: str = "scipy") -> EvalResult:
    """The graph seed's mixed-observation protocol (see module docstring), one split per ``seed``, of the
    ``Records.rankable_tasks`` (the single record of another task would never be observed: int(1 x ratio) = 0)."""
    measure = partial(measure_all, tau_protocol=tau_protocol)
    records = records.with_rows(records.table[records.table["dataset"].isin(records.rankable_tasks())])
    train, observed = seed_mixture_split(records, seed)
    start = time.perf_counter()
    learner = factory().fit(train)
    fit_s = [time.perf_counter() - start]
    rows, rank_s = [], []
    for task in records.record_tasks:
        truth = records.truth(task)
        start = time.perf_counter()
        score = learner.predict(task, models=list(truth.index))
        rank_s.append(time.perf_counter() - start)
        seen = truth.index.isin(observed[task])
        filled = np.where(seen, truth.to_numpy(), score.to_numpy())
        base = {"task": task, "n_observed": int(seen.sum())}
        rows.append({**base, "protocol": "seed_filled", **measure(truth.to_numpy(), filled)})
        if (~seen).sum() >= 2:
            rows.append({**base, "protocol": "unobserved",
                         **measure(truth.to_numpy()[~seen], score.to_numpy()[~seen], truth.to_numpy())})
        if not seen.any():
            rows.append({**base, "protocol": "cold", **measure(truth.to_numpy(), score.to_numpy())})
    return EvalResult(pd.DataFrame(rows), fit_s, rank_s)


def paired_difference(per_task: pd.DataFrame, learner: str, baseline: str, measure: str) -> dict[str, object] | None:
    """``learner`` minus ``baseline`` on ``measure``, task by task (``per_task``: rows with learner, task and the
    measure; repeated rows of a task, e.g. seeds, are averaged first): mean, standard error, wins / losses and
    the verdict, "beats" / "loses" only beyond 2 standard errors (else "ties"). None with fewer than 2 tasks."""
    table = per_task.groupby(["learner", "task"])[measure].mean().unstack("task")
    if learner not in table.index or baseline not in table.index:
        return None
    first, second = table.loc[learner], table.loc[baseline]
    both = first.notna() & second.notna()
    diff = pd.Series(paired_differences(first[both], second[both]))  # rounding is no win, as in `evaluate --compare`
    if diff.size < 2:
        return None
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))
    verdict = "beats" if mean > 2 * se else "loses" if mean < -2 * se else "ties"
    return {"diff": mean, "se": se, "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum()),
            "tasks": int(diff.size), "verdict": verdict}
