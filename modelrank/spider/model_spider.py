"""Model Spider: tokens for models and tasks, a learned fitness score, trained to rank (Zhang et al., NeurIPS'23).

"Model Spider: Learning to Rank Pre-Trained Models Efficiently", Y.-K. Zhang, T.-J. Huang, Y.-X. Ding,
D.-C. Zhan, H.-J. Ye. Each pre-trained model m is a learnable token θ_m; a task T is summarised into task
tokens μ(T) (the class prototypes of one general encoder's features, or here also its encoded metadata /
text embedding when no features are available). A small Transformer reads [θ_m; μ(T)] and outputs the
fitness f(θ_m, μ(T)); it is trained on many sampled sub-tasks of the training tasks with a listwise ranking
loss (Plackett–Luce / ListMLE: −Σ_i log softmax_{j≥i}(f_(j)) over the models sorted by true accuracy).
A new task needs no fine-tuning: its tokens are computed and all model tokens are scored in one batch.

Re-ranking (the paper's second stage): for the top-k models of stage one, the task tokens are enriched with
that model's OWN features on the task (class prototypes of model m's features, projected by a per-model
adapter), and the k models are re-ordered by the enriched fitness. This needs per-model features on the
task (``Records.model_task_prototypes`` / ``TaskInfo.model_prototypes``); without them re-ranking is a no-op.

A new model joins the zoo with ``add_model``: its token is learned from a few records while every other
parameter stays frozen.

Training runs at most ``episodes`` episodes with early stopping on a ``val_fraction`` of the training tasks
held back (with fewer than 40 training tasks, every one is held back once across folds, and with fewer than
3 the base is kept: ``base.train_validated``; cold-start style; with ``cv_group`` whole groups are held back and the base of every training pair
leaves its group out, as in a leave-one-group-out evaluation). The untrained state is the reference: because
the fitness head starts at zero that state IS the base below (times a gain), and the trained state is kept
only if it beats it on the validation tasks by more than one standard error of the per-task differences, so
the learner falls back to the base when the tokens do not generalise to held-out training tasks (what
happens on the public metadata-only records, see the benchmark).

Addition to the paper, residual learning (``prior``): the fitness adds a learned gain times a base
prediction, so the tokens learn the task-specific correction to it instead of spending their capacity
re-learning it from few tasks. The base is by default the task-attention prior (``task_attention``: each
model's z-scores on the training tasks averaged with weights learned from task features, the observed
accuracies of a partially observed task and its transferability scores, selected by inner cross-validation
on the training tasks); "model" is the plain model prior (mean within-task z-score), "none" no base.
Training pairs get the base computed from the other training tasks, so a pair never sees its own label.
Through the base, Model Spider also uses the observed accuracies of a partially observed task.

Sub-tasks: the paper samples class subsets of its training datasets and approximates their ground-truth
rankings. Records give one accuracy per (task, model) only, so a sub-task here is (a training task, a random
subset of the models fine-tuned on it), with prototype tokens randomly dropped as augmentation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from .base import LEARNERS, Learner, TaskView, masked_row_pearson, train_validated
from .records import Records
from .task_attention import PriorBase, task_groups

TOKEN_MODEL, TOKEN_META, TOKEN_PROTO, TOKEN_SPECIFIC = range(4)


def list_mle(scores: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Listwise Plackett–Luce loss per row, mean over rows: Σ_i [logsumexp(s_(i..n)) − s_(i)] / n, sorted by truth."""
    order = truth.masked_fill(~mask, -torch.inf).argsort(1, descending=True)
    s = scores.gather(1, order)
    m = mask.gather(1, order)
    s = s.masked_fill(~m, -1e9)  # padded entries take no part in any softmax
    tail = torch.logcumsumexp(s.flip(1), 1).flip(1)
    per_row = ((tail - s) * m).sum(1) / m.sum(1).clamp(min=1)
    return per_row[m.sum(1) >= 2].mean()


class SpiderNet(nn.Module):
    """Model tokens + task-token projections + a Transformer encoder that scores [model token; task tokens]."""

    def __init__(self, n_models: int, task_dim: int, proto_dim: int, specific_dims: dict[int, int], hidden: int,
                 heads: int, layers: int):
        super().__init__()
        self.model_tokens = nn.Parameter(torch.randn(n_models, hidden) * 0.1)
        self.meta_proj = nn.Linear(task_dim, hidden) if task_dim else None
        self.proto_proj = nn.Linear(proto_dim, hidden) if proto_dim else None
        self.specific = nn.ModuleDict({str(m): nn.Linear(d, hidden) for m, d in specific_dims.items()})
        self.type_embed = nn.Embedding(4, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(hidden, 1)
        # zero-initialised: before training the fitness IS the model prior (x gain), so early stopping on
        # held-out training tasks can keep the prior when the learned part does not help them
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.prior_gain = nn.Parameter(torch.ones(()))

    def task_tokens(self, meta: torch.Tensor | None, protos: torch.Tensor | None, proto_mask: torch.Tensor | None):
        """(B, L, h) tokens and (B, L) validity of B tasks: [meta token] + [prototype tokens]."""
        tokens, masks = [], []
        if self.meta_proj is not None:
            tokens.append((self.meta_proj(meta) + self.type_embed.weight[TOKEN_META])[:, None])
            masks.append(torch.ones(meta.shape[0], 1, dtype=torch.bool))
        if self.proto_proj is not None:
            tokens.append(self.proto_proj(F.normalize(protos, dim=-1)) + self.type_embed.weight[TOKEN_PROTO])
            masks.append(proto_mask)
        if not tokens:  # no description of the task: the fitness reads the model token (and the base) only
            return torch.zeros(meta.shape[0], 0, self.type_embed.weight.shape[1]), torch.zeros(meta.shape[0], 0, dtype=torch.bool)
        return torch.cat(tokens, 1), torch.cat(masks, 1)

    def fitness(self, model_idx: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                model_tokens: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Fitness of P (model, task-token set) pairs: model_idx (P,), tokens (P, L, h), mask (P, L) -> (P,);
        plus ``prior_gain`` x the model's prior when given."""
        table = self.model_tokens if model_tokens is None else model_tokens
        first = (table[model_idx] + self.type_embed.weight[TOKEN_MODEL])[:, None]
        seq = torch.cat([first, tokens], 1)
        pad = ~torch.cat([torch.ones(len(model_idx), 1, dtype=torch.bool), mask], 1)
        out = self.head(self.encoder(seq, src_key_padding_mask=pad)[:, 0]).squeeze(1)
        return out if prior is None else out + self.prior_gain * prior

    def specific_tokens(self, model: int, protos: torch.Tensor) -> torch.Tensor:
        """(C, h) tokens of one model's own class prototypes on the task."""
        return self.specific[str(model)](F.normalize(protos, dim=-1)) + self.type_embed.weight[TOKEN_SPECIFIC]


def _pad(arrays: list[np.ndarray | None], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length (C_i, dim) arrays into (n, C_max, dim) + validity mask (None = no rows)."""
    longest = max([0 if a is None else len(a) for a in arrays] + [1])
    out = torch.zeros(len(arrays), longest, dim)
    mask = torch.zeros(len(arrays), longest, dtype=torch.bool)
    for i, a in enumerate(arrays):  # one copy per task (not per sample)
        if a is not None:
            out[i, : len(a)] = torch.as_tensor(a, dtype=torch.float32)
            mask[i, : len(a)] = True
    return out, mask


@LEARNERS.register("spider")
class ModelSpider(Learner):
    """Model Spider learned ranker (see module docstring)."""

    name = "spider"
    defaults = {
        "hidden": 32, "heads": 2, "layers": 1, "episodes": 400, "tasks_per_episode": 16, "models_per_subtask": 16,
        "lr": 3e-3, "weight_decay": 1e-4, "proto_dropout": 0.2, "rerank_k": 3, "val_fraction": 0.2,
        "eval_every": 10, "patience": 8, "prior": "attention", "cv_group": None, "seed": 0,
    }

    # ------------------------------------------------------------------------------------ fitting
    def _fit(self, records: Records) -> None:
        cfg = self.config
        self.protos = [records.task_prototypes.get(t) if records.task_prototypes else None for t in self.tasks]
        dims = {np.asarray(p).shape[1] for p in self.protos if p is not None}
        if len(dims) > 1:
            raise InvalidInputError(f"task prototypes must all come from one encoder (same width), got widths {sorted(dims)}")
        self.proto_dim = dims.pop() if dims else 0
        model_pos = {m: i for i, m in enumerate(self.models)}
        task_pos = {t: i for i, t in enumerate(self.tasks)}
        self.specific = {(task_pos[t], model_pos[m]): np.asarray(p, np.float32)
                         for (m, t), p in (records.model_task_prototypes or {}).items() if m in model_pos and t in task_pos}
        specific_dims = {m: p.shape[1] for (_, m), p in self.specific.items()}
        self._build_specific_table()
        self._specific_dims = specific_dims
        self.task_mu = self.task_features.mean(0)
        self.task_sd = np.where(self.task_features.std(0) > 1e-6, self.task_features.std(0), 1.0)
        self._set_prior(groups=task_groups(self, records, cfg["cv_group"]))
        acc = torch.from_numpy(self.accuracy.copy())
        self._training = {"acc": acc, "known": torch.isfinite(acc), "loo": torch.from_numpy(self.prior_loo)}
        train_validated(self, self.accuracy, float(cfg["val_fraction"]), int(cfg["seed"]), self.base.groups,
                        int(cfg["episodes"]), int(cfg["eval_every"]), int(cfg["patience"]))
        del self._training, self._specific_dims
        self.net.eval()

    def _new_net(self) -> None:
        torch.manual_seed(int(self.config["seed"]))
        self.net = self._make_net(self._specific_dims)

    def _train(self, val: np.ndarray, episodes: int, check) -> None:
        """``episodes`` of ListMLE training on sub-tasks of the tasks outside ``val``; ``check()`` every
        ``eval_every`` episodes stops it when True."""
        cfg, d = self.config, self._training
        acc, known, loo = d["acc"], d["known"], d["loo"]
        rng = np.random.default_rng(int(cfg["seed"]))
        trainable = np.flatnonzero((known.sum(1).numpy() >= 2) & ~val)
        if trainable.size == 0:
            return
        opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
        for episode in range(episodes):
            self.net.train()
            tasks = rng.choice(trainable, min(int(cfg["tasks_per_episode"]), trainable.size), replace=False)
            keys = torch.from_numpy(rng.random((tasks.size, len(self.models))).astype(np.float32))
            keys = keys.masked_fill(~known[tasks], -1.0)
            size = min(int(cfg["models_per_subtask"]), len(self.models))
            idx = keys.topk(size, dim=1).indices  # a random subset of the models fine-tuned on each task
            mask = known[tasks][torch.arange(tasks.size)[:, None], idx]
            tokens, tmask = self._task_tokens(tasks, drop=float(cfg["proto_dropout"]), rng=rng)
            prior = loo[tasks][torch.arange(tasks.size)[:, None], idx]
            scores = self._pair_fitness(idx, tokens, tmask, prior=prior)
            truth = acc[tasks][torch.arange(tasks.size)[:, None], idx]
            loss = list_mle(scores, torch.nan_to_num(truth), mask)
            if self.specific:
                enriched = self._pair_fitness(idx, tokens, tmask, tasks=tasks, prior=prior)
                loss = loss + list_mle(enriched, torch.nan_to_num(truth), mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if check is not None and (episode + 1) % int(cfg["eval_every"]) == 0 and check():
                break

    def _validate(self, val: np.ndarray) -> np.ndarray:
        """Within-task Pearson of the stage-one fitness with the truth on each ``val`` task."""
        vt = np.flatnonzero(val)
        self.net.eval()
        with torch.no_grad():
            grid = self._all_models(vt)
        return masked_row_pearson(grid, self._training["acc"][vt], self._training["known"][vt])

    def _build_specific_table(self) -> None:
        """Per model: its own prototypes on every known task as (T, C_max, D_model) + validity (T, C_max)."""
        self.specific_table: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for m in sorted({m for _, m in self.specific}):
            rows = [self.specific.get((t, m)) for t in range(len(self.tasks))]
            self.specific_table[m] = _pad(rows, next(p.shape[1] for p in rows if p is not None))

    def _make_net(self, specific_dims: dict[int, int]) -> SpiderNet:
        cfg = self.config
        return SpiderNet(len(self.models), self.task_features.shape[1], self.proto_dim, specific_dims,
                         int(cfg["hidden"]), int(cfg["heads"]), int(cfg["layers"]))

    def _task_tokens(self, tasks: np.ndarray, drop: float = 0.0, rng=None, features=None, protos=None):
        """Task tokens of known tasks (by index) or of one new task (features/protos given)."""
        feats = self.task_features[tasks] if features is None else features[None]
        meta = torch.from_numpy(((feats - self.task_mu) / self.task_sd).astype(np.float32))
        proto_list = [self.protos[t] for t in tasks] if protos is None else [protos]
        p, pmask = _pad(proto_list, max(self.proto_dim, 1))
        if drop and rng is not None:  # prototype dropout: a sub-task sees a random subset of its classes
            keep = torch.from_numpy(rng.random(pmask.shape) >= drop)
            keep[:, 0] = True
            pmask = pmask & keep
        return self.net.task_tokens(meta, p if self.proto_dim else None, pmask if self.proto_dim else None)

    def _pair_fitness(self, idx: torch.Tensor, tokens: torch.Tensor, tmask: torch.Tensor, tasks=None,
                      specific: dict[int, np.ndarray] | None = None, model_tokens=None,
                      prior: torch.Tensor | None = None) -> torch.Tensor:
        """Fitness of (B, S) model indices against B task-token sets; with ``tasks``/``specific`` the tokens of
        each pair are enriched with that model's own prototypes when they exist (stage two)."""
        b, s = idx.shape
        tok = tokens[:, None].expand(-1, s, -1, -1).reshape(b * s, *tokens.shape[1:])
        msk = tmask[:, None].expand(-1, s, -1).reshape(b * s, -1)
        if tasks is not None or specific is not None:
            if specific is not None:  # one new task: its own prototypes per model, as a 1-task table
                table = {m: _pad([p], p.shape[1]) for m, p in specific.items() if str(m) in self.net.specific}
                rows_of = torch.zeros(b, dtype=torch.long)
            else:
                table, rows_of = self.specific_table, torch.as_tensor(np.asarray(tasks), dtype=torch.long)
            width = max([t[0].shape[1] for t in table.values()] + [1])
            pad = torch.zeros(b * s, width, tokens.shape[-1])
            pmask = torch.zeros(b * s, width, dtype=torch.bool)
            flat = idx.reshape(-1)
            for m, (protos, valid) in table.items():  # one projection per model (each has its own width)
                pos = torch.nonzero(flat == m).squeeze(1)
                if pos.numel():
                    rows = rows_of[pos // s]
                    c = protos.shape[1]
                    pad[pos, :c] = self.net.specific_tokens(m, protos[rows])
                    pmask[pos, :c] = valid[rows]
            tok, msk = torch.cat([tok, pad], 1), torch.cat([msk, pmask], 1)
        flat_prior = None if prior is None else prior.reshape(-1)
        return self.net.fitness(idx.reshape(-1), tok, msk, model_tokens, flat_prior).view(b, s)

    def _all_models(self, tasks: np.ndarray) -> torch.Tensor:
        """Stage-one fitness of every model on known tasks: (len(tasks), n_models)."""
        tokens, tmask = self._task_tokens(tasks)
        idx = torch.arange(len(self.models)).expand(len(tasks), -1)
        return self._pair_fitness(idx, tokens, tmask, prior=torch.from_numpy(self.prior_loo[tasks]))

    def _set_prior(self, state: dict[str, Any] | None = None, groups: np.ndarray | None = None) -> None:
        """The base the fitness corrects (``prior``, see the module docstring): selected on the training tasks
        (``groups``: by leave-one-group-out, option ``cv_group``), or restored from ``state``; ``prior_loo``
        (T, M) holds its leave-one-task-out (leave-one-group-out) values for training."""
        base = PriorBase(self, self.config["prior"], use_scores=True)
        self.base = base.select(int(self.config["seed"]), groups) if state is None else base.restore(state)
        self.prior_loo = self.base.training()

    # --------------------------------------------------------------------------------- predicting
    def _stored_prototypes(self, task: str):
        i = self.tasks.index(task)
        own = {m: p for (t, m), p in self.specific.items() if t == i} or None
        return self.protos[i], own

    def _scores(self, view: TaskView) -> np.ndarray:
        if view.index is None and self.proto_dim and view.prototypes is None and self.task_features.shape[1] == 0:
            raise InvalidInputError(f"task {view.name!r} has no prototypes; this Model Spider was trained on prototypes")
        if view.prototypes is not None and self.proto_dim and np.asarray(view.prototypes).shape[1] != self.proto_dim:
            raise InvalidInputError(f"task prototypes must be {self.proto_dim}-d (the general encoder's width)")
        with torch.no_grad():
            tokens, tmask = self._task_tokens(np.zeros(1, int), features=view.features,
                                              protos=view.prototypes if self.proto_dim else None)
            idx = torch.arange(len(self.models))[None]
            prior = torch.from_numpy(self.base.of(view))[None]
            scores = self._pair_fitness(idx, tokens, tmask, prior=prior)[0].numpy().astype(np.float64)
            return self._rerank(scores, tokens, tmask, view.model_prototypes or {}, prior[0], view.rerank_k)

    @property
    def rerank_models(self) -> list[str]:
        """The models with a trained adapter for their own prototypes (those that had them in the records)."""
        return [m for i, m in enumerate(self.models) if str(i) in self.net.specific]

    def _rerank(self, scores: np.ndarray, tokens, tmask, own: dict[int, np.ndarray], prior=None,
                k: int | None = None) -> np.ndarray:
        """Re-order the top-k models by the fitness with model-specific task tokens (no-op without them);
        k: the configured ``rerank_k`` unless given."""
        k = min(int(self.config["rerank_k"]) if k is None else k, len(scores))
        top = np.argsort(-scores, kind="stable")[:k]
        usable = [m for m in top if m in own and str(m) in self.net.specific]
        if k < 2 or len(usable) < 2:
            return scores
        usable = np.asarray(usable)
        idx = torch.from_numpy(usable)[None]
        enriched = self._pair_fitness(idx, tokens, tmask, specific=own,
                                      prior=None if prior is None else prior[idx])[0].numpy()
        slots = np.sort(scores[usable])[::-1]  # the same values, handed out in the re-ranked order
        out = scores.copy()
        out[usable[np.argsort(-enriched, kind="stable")]] = slots
        return out

    # ---------------------------------------------------------------------------------- new model
    def add_model(self, name: str, records: Records | pd.DataFrame, steps: int = 200, lr: float = 1e-2) -> "ModelSpider":
        """Add ``name`` to the zoo: learn its token from its records (tasks the learner knows), all else frozen.

        ``records``: rows (dataset, model, accuracy) of the new model; the other models' accuracies on those
        tasks come from the learner's training records.
        """
        if not self.fitted:
            raise InvalidInputError("fit the learner before adding models")
        if name in self.models:
            raise InvalidInputError(f"model {name!r} is already in the zoo")
        table = records.table if isinstance(records, Records) else records
        rows = table[table["model"] == name]
        unknown = sorted(set(rows["dataset"]) - set(self.tasks))
        if rows.empty or unknown:
            raise InvalidInputError(f"add_model needs records of {name!r} on tasks the learner knows (unknown: {unknown[:5]})")
        ti = np.asarray([self.tasks.index(t) for t in rows["dataset"]])
        new_acc = torch.tensor(rows["accuracy"].to_numpy(dtype=np.float32))
        acc = torch.from_numpy(self.accuracy[ti])
        mask = torch.cat([torch.isfinite(acc), torch.ones(len(ti), 1, dtype=torch.bool)], 1)
        if not (mask.sum(1) >= 2).any():
            raise InvalidInputError(f"no task of {name!r} has records of other models to rank against")
        truth = torch.cat([torch.nan_to_num(acc), new_acc[:, None]], 1)
        grown = np.concatenate([self.accuracy, np.full((len(self.tasks), 1), np.nan, np.float32)], 1)
        grown[ti, -1] = new_acc.numpy()
        prior_before = self.prior_loo
        for p in self.net.parameters():
            p.requires_grad_(False)
        token = self.net.model_tokens.detach().mean(0, keepdim=True).clone().requires_grad_(True)
        opt = torch.optim.Adam([token], lr=lr)
        tokens, tmask = self._task_tokens(ti)
        idx = torch.arange(len(self.models) + 1).expand(len(ti), -1)
        self.accuracy = grown
        self.scores = np.concatenate([self.scores, np.full((len(self.tasks), 1, self.scores.shape[2]), np.nan, np.float32)], 1)
        self._set_prior(self.base.state())  # the new model gets a base from its records (task z-scores now include it)
        pair_prior = torch.from_numpy(np.concatenate([prior_before[ti], self.prior_loo[ti, -1:]], 1))
        self.net.eval()
        for _ in range(steps):
            table_tokens = torch.cat([self.net.model_tokens.detach(), token])
            fitness = self._pair_fitness(idx, tokens, tmask, model_tokens=table_tokens, prior=pair_prior)
            loss = list_mle(fitness, truth, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.net.model_tokens = nn.Parameter(torch.cat([self.net.model_tokens.detach(), token.detach()]))
        for p in self.net.parameters():
            p.requires_grad_(True)
        self.models.append(name)
        self.model_features = np.concatenate([self.model_features, np.zeros((1, self.model_features.shape[1]), np.float32)])
        return self

    # -------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "task_mu": torch.from_numpy(self.task_mu), "task_sd": torch.from_numpy(self.task_sd),
            "proto_dim": torch.tensor(self.proto_dim),
            "protos": {str(i): torch.from_numpy(np.asarray(p, np.float32)) for i, p in enumerate(self.protos) if p is not None},
            "specific": {f"{t},{m}": torch.from_numpy(p) for (t, m), p in self.specific.items()},
            "base": self.base.state(),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.task_mu, self.task_sd = state["task_mu"].numpy(), state["task_sd"].numpy()
        self.proto_dim = int(state["proto_dim"])
        self.protos = [state["protos"][str(i)].numpy() if str(i) in state["protos"] else None for i in range(len(self.tasks))]
        self.specific = {tuple(int(v) for v in k.split(",")): p.numpy() for k, p in state["specific"].items()}
        self._build_specific_table()
        self._set_prior(state["base"])
        self.net = self._make_net({m: p.shape[1] for (_, m), p in self.specific.items()})
        self.net.model_tokens = nn.Parameter(torch.zeros_like(state["net"]["model_tokens"]))
        self.net.load_state_dict(state["net"])
        self.net.eval()
