"""Graph learner: accuracy prediction as edge regression on a bipartite model–task graph.

After Chen, Wu, Xu, Li, "Transferability Prediction for Model Recommendation: A Graph Learning based
Approach" (SCG4Trf, 2024): models and tasks are nodes with metadata features (plus text embeddings of the
task's domain and labels), fine-tune records are model–task edges, attention message passing with skip
connections (the seed concatenates every layer's output, "jumping knowledge") learns node embeddings and a
pair decoder regresses the accuracy of unseen pairs. Written in plain torch (no graph library).

Where this differs from the seed's public code (scgat.py), on purpose:
* Edge features are USED: every model–task edge carries [observed accuracy (when visible), transferability
  scores such as LogME (when given)] into the attention keys and the messages. scgat.py passes the edge
  weights to PyG ``GATConv`` built without ``edge_dim``, which silently ignores them, and its edges carry
  only model -> task messages.
* Messages flow both ways (model -> task and task -> model), and each task also listens to its k most
  similar tasks by features (TransferGraph's dataset–dataset edges), so a cold-start task, which has no
  accuracy edge, still aggregates what similar tasks observed.
* Training hides a random part of the known accuracies from the message graph each epoch and supervises
  only those (with a share of tasks fully hidden, as in cold start), so the network cannot read the label
  of an edge from its own message.
* Residual learning (``prior``): the decoder adds a task-dependent gain times a base prediction, and the
  rest of the network only learns the correction to it. The base is by default the task-attention prior
  (``task_attention``: the models' z-scores on the training tasks averaged with weights learned from task
  features, observed accuracies and transferability scores, selected by inner cross-validation on the
  training tasks), "model" is the plain model prior, "none" no base. Training pairs get the base computed
  from the other training tasks, so a pair never sees its own label. The correction starts at zero and
  early stopping on held-out training tasks keeps the base unless the correction beats it there by more than
  one standard error of the per-task differences (with fewer than 40 training tasks every task is held out
  once across folds, and with fewer than 3 the correction cannot be validated and the base is kept:
  ``base.train_validated``) (``cv_group``: whole groups are held out, and the training base leaves each task's group out, so
  validation is as cold as a leave-one-group-out evaluation). The prediction also starts from the task's level, the mean of its visible accuracies (the global mean for a
  cold task), which ranks nothing but puts the output on the accuracy scale from the first epoch.
* Loss = MSE on (globally standardised) accuracy + ``rank_weight`` × MSE of within-task centred
  predictions (the ranking within a task is what model selection needs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import LEARNERS, Learner, TaskView, masked_row_pearson, train_validated
from .records import Records
from .task_attention import PriorBase, task_groups

RELATIONS = 3  # model -> task, task -> model, task -> task (feature neighbours)


def scatter_softmax(logits: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of ``logits`` (E, H) over the edges that share a destination ``index`` (E,)."""
    heads = logits.shape[1]
    idx = index[:, None].expand(-1, heads)
    top = torch.full((n, heads), -torch.inf, dtype=logits.dtype).scatter_reduce(0, idx, logits, "amax")
    ex = (logits - top[index]).exp()
    total = torch.zeros((n, heads), dtype=logits.dtype).index_add_(0, index, ex)
    return ex / total[index].clamp(min=1e-16)


class EdgeAttention(nn.Module):
    """One attention message-passing layer with edge features and a residual (skip) connection.

    For an edge j -> i with features e_ji: k = W_k h_j + E_k e_ji, v = W_v h_j + E_v e_ji,
    α_ji = softmax_j((W_q h_i)·k / √d) per head, h_i' = LayerNorm(h_i + ELU(W_o Σ_j α_ji v)).
    """

    def __init__(self, hidden: int, edge_dim: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError("hidden must be divisible by heads")
        self.heads, self.d = heads, hidden // heads
        self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
        self.ek, self.ev = nn.Linear(edge_dim, hidden), nn.Linear(edge_dim, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
        n, shape = h.shape[0], (-1, self.heads, self.d)
        q = self.q(h).view(shape)[dst]
        k = (self.k(h)[src] + self.ek(edge)).view(shape)
        v = (self.v(h)[src] + self.ev(edge)).view(shape)
        alpha = scatter_softmax((q * k).sum(-1) / self.d**0.5, dst, n)
        agg = torch.zeros((n, self.heads, self.d), dtype=h.dtype).index_add_(0, dst, alpha[..., None] * v)
        return self.norm(h + self.dropout(F.elu(self.out(agg.reshape(n, -1)))))


class GraphNet(nn.Module):
    """Node encoders -> attention layers (skip + concatenation of all layers) -> pair decoder."""

    def __init__(self, n_models: int, model_dim: int, task_dim: int, n_scores: int, hidden: int, heads: int,
                 layers: int, dropout: float):
        super().__init__()
        self.model_id = nn.Embedding(n_models, hidden)  # the zoo is fixed: a free vector per model
        self.model_in = nn.Linear(model_dim, hidden) if model_dim else None
        self.task_in = nn.Linear(task_dim, hidden) if task_dim else None
        self.task_bias = nn.Parameter(torch.zeros(hidden))
        edge_dim = 3 + 2 * n_scores + RELATIONS
        self.layers = nn.ModuleList(EdgeAttention(hidden, edge_dim, heads, dropout) for _ in range(layers))
        self.jump = nn.Linear(hidden * (layers + 1), hidden)
        self.decoder = nn.Sequential(nn.Linear(3 * hidden + 2 * n_scores + 1, hidden), nn.ELU(), nn.Linear(hidden, 1))
        self.prior_gain = nn.Linear(hidden, 1)  # how much the base (``prior`` option) matters, per task
        # zero-initialised correction and a constant gain: the untrained network predicts "base x gain", so
        # early stopping on held-out training tasks can keep the base when the learned part does not help
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)
        nn.init.zeros_(self.prior_gain.weight)

    def encode(self, model_x, task_x, src, dst, edge) -> torch.Tensor:
        hm = self.model_id.weight + (self.model_in(model_x) if self.model_in is not None else 0)
        ht = self.task_bias.expand(task_x.shape[0], -1) + (self.task_in(task_x) if self.task_in is not None else 0)
        h = torch.cat([hm, ht])
        outs = [h]
        for layer in self.layers:
            h = layer(h, src, dst, edge)
            outs.append(h)
        return self.jump(torch.cat(outs, 1))

    def decode(self, z_model, z_task, pair_scores, prior) -> torch.Tensor:
        """Standardised accuracy of pairs minus the task level: MLP([z_m, z_t, z_m*z_t, scores, base]) + gain(z_t) * base."""
        out = self.decoder(torch.cat([z_model, z_task, z_model * z_task, pair_scores, prior[:, None]], 1)).squeeze(1)
        return out + self.prior_gain(z_task).squeeze(1) * prior


@LEARNERS.register("graph")
class GraphLearner(Learner):
    """Bipartite model–task graph attention network regressing fine-tune accuracy (see module docstring)."""

    name = "graph"
    task_inputs = ("metadata", "embedding", "scores")
    defaults = {
        "hidden": 32, "heads": 2, "layers": 2, "dropout": 0.3, "epochs": 300, "lr": 5e-3, "weight_decay": 1e-2,
        "task_knn": 5, "message_fraction": 0.6, "cold_task_fraction": 0.6, "rank_weight": 1.0,
        "use_scores": True, "prior": "attention", "cv_group": None, "val_fraction": 0.15, "eval_every": 10,
        "patience": 8, "seed": 0,
    }

    # ------------------------------------------------------------------------------ graph pieces
    def _standardized_scores(self, scores: np.ndarray) -> np.ndarray:
        """Per task and score column, z-score across models (raw LogME values are not comparable across tasks)."""
        if not self.config["use_scores"] or scores.shape[-1] == 0:
            return np.zeros(scores.shape[:-1] + (0,), np.float32)
        present = np.isfinite(scores)
        n = np.maximum(present.sum(-2, keepdims=True), 1)
        values = np.where(present, scores, 0.0)
        mean = values.sum(-2, keepdims=True) / n
        std = np.sqrt(np.where(present, (values - mean) ** 2, 0.0).sum(-2, keepdims=True) / n)
        return np.where(present, (values - mean) / np.where(std > 0, std, 1.0), 0.0).astype(np.float32)

    def _present(self, scores: np.ndarray) -> torch.Tensor:
        """(T, M, S) flags of the scores that exist (no columns when scores are switched off)."""
        if not self.config["use_scores"]:
            return torch.zeros(scores.shape[:-1] + (0,), dtype=torch.bool)
        return torch.from_numpy(np.isfinite(scores))

    def _pair_features(self, acc_visible: torch.Tensor, scores_z: torch.Tensor, scores_present: torch.Tensor):
        """Per (task, model) features: [acc, acc - task mean of visible acc, visible flag, scores, score flags]."""
        vis = torch.isfinite(acc_visible)
        acc = torch.nan_to_num((acc_visible - self.y_mean) / self.y_std)
        n = vis.sum(1, keepdim=True).clamp(min=1)
        rel = torch.where(vis, acc - acc.sum(1, keepdim=True) / n, torch.zeros(()))
        return torch.cat([acc[..., None], rel[..., None], vis[..., None].float(), scores_z, scores_present.float()], -1), vis

    def _task_neighbours(self, task_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k nearest tasks by cosine similarity of features (chunked: memory O(chunk x T), not T x T)."""
        k = min(int(self.config["task_knn"]), task_x.shape[0] - 1)
        if k < 1 or task_x.shape[1] == 0:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        x = F.normalize((task_x - self.task_mu) / self.task_sd, dim=1)
        src, dst = [], []
        for start in range(0, x.shape[0], 1024):
            sim = x[start:start + 1024] @ x.T
            rows = torch.arange(start, min(start + 1024, x.shape[0]))
            sim[rows - start, rows] = -torch.inf
            src.append(sim.topk(k, dim=1).indices.reshape(-1))
            dst.append(rows.repeat_interleave(k))
        return torch.cat(src), torch.cat(dst)

    def _graph(self, task_x, acc_visible, scores_z, scores_present):
        """Edges (src, dst, features) of the message graph; node ids: models 0..M-1, tasks M..M+T-1."""
        n_models = len(self.models)
        pair, vis = self._pair_features(acc_visible, scores_z, scores_present)
        ti, mi = torch.nonzero(vis | scores_present.any(-1), as_tuple=True)
        feats = pair[ti, mi]
        tsrc, tdst = self._task_neighbours(task_x)
        rel = torch.eye(RELATIONS)
        src = torch.cat([mi, ti + n_models, tsrc + n_models])
        dst = torch.cat([ti + n_models, mi, tdst + n_models])
        zeros = torch.zeros((tsrc.shape[0], pair.shape[-1]))
        edge = torch.cat([
            torch.cat([feats, rel[0].expand(len(ti), -1)], 1),
            torch.cat([feats, rel[1].expand(len(ti), -1)], 1),
            torch.cat([zeros, rel[2].expand(len(tsrc), -1)], 1),
        ])
        return src, dst, edge

    def _forward(self, task_x, acc_visible, scores_z, scores_present, ti, mi, prior) -> torch.Tensor:
        """Predicted standardised accuracy of the pairs (ti, mi) given the visible accuracies."""
        src, dst, edge = self._graph(task_x, acc_visible, scores_z, scores_present)
        model_x = torch.from_numpy(self.model_features)
        z = self.net.encode(model_x, task_x, src, dst, edge)
        pair_scores = torch.cat([scores_z[ti, mi], scores_present[ti, mi].float()], 1)
        visible = torch.isfinite(acc_visible)
        level = torch.nan_to_num((acc_visible - self.y_mean) / self.y_std).sum(1) / visible.sum(1).clamp(min=1)
        return level[ti] + self.net.decode(z[mi], z[len(self.models) + ti], pair_scores, prior)

    # ------------------------------------------------------------------------------------ fitting
    def _fit(self, records: Records) -> None:
        cfg = self.config
        acc = torch.from_numpy(self.accuracy.copy())
        known = torch.isfinite(acc)
        self.base = PriorBase(self, cfg["prior"], bool(cfg["use_scores"])).select(
            int(cfg["seed"]), task_groups(self, records, cfg["cv_group"]))
        self.y_mean = float(acc[known].mean())
        self.y_std = float(acc[known].std()) if known.sum() > 1 and float(acc[known].std()) > 0 else 1.0
        task_x = torch.from_numpy(self.task_features)
        self.task_mu = task_x.mean(0)
        self.task_sd = task_x.std(0).clamp(min=1e-6) if len(task_x) > 1 and task_x.shape[1] else torch.ones(task_x.shape[1])
        # the typical within-task spread of the standardised accuracy: the gain the base (a z-score) starts at
        rows = self.accuracy[np.isfinite(self.accuracy).sum(1) >= 2]
        self._training = {"acc": acc, "known": known, "loo": torch.from_numpy(self.base.training()), "task_x": task_x,
                          "scores_z": torch.from_numpy(self._standardized_scores(self.scores)),
                          "present": self._present(self.scores),
                          "z_spread": float(np.mean(np.nanstd(rows, axis=1))) / self.y_std}
        train_validated(self, self.accuracy, float(cfg["val_fraction"]), int(cfg["seed"]), self.base.groups,
                        int(cfg["epochs"]), int(cfg["eval_every"]), int(cfg["patience"]))
        del self._training
        self.net.eval()

    def _new_net(self) -> None:
        cfg = self.config
        torch.manual_seed(int(cfg["seed"]))
        self.net = GraphNet(len(self.models), self.model_features.shape[1], self.task_features.shape[1],
                            self._training["scores_z"].shape[-1], int(cfg["hidden"]), int(cfg["heads"]),
                            int(cfg["layers"]), float(cfg["dropout"]))
        nn.init.constant_(self.net.prior_gain.bias, self._training["z_spread"])

    def _train(self, val: np.ndarray, epochs: int, check) -> None:
        """``epochs`` of training on the tasks outside ``val``; ``check()`` every ``eval_every`` epochs stops it when True."""
        cfg, d = self.config, self._training
        acc, known, loo = d["acc"], d["known"], d["loo"]
        rng = np.random.default_rng(int(cfg["seed"]))
        opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
        train_known = known & ~torch.from_numpy(val)[:, None]
        n_tasks = len(self.tasks)
        for epoch in range(epochs):
            self.net.train()
            message = train_known & torch.from_numpy(rng.random(acc.shape) < float(cfg["message_fraction"]))
            cold = torch.from_numpy(rng.random(n_tasks) < float(cfg["cold_task_fraction"]))
            message &= ~cold[:, None]
            target = train_known & ~message
            if not target.any():
                target = train_known
            ti, mi = torch.nonzero(target, as_tuple=True)
            pred = self._forward(d["task_x"], torch.where(message, acc, torch.nan), d["scores_z"], d["present"], ti, mi,
                                 loo[ti, mi])
            y = (acc[ti, mi] - self.y_mean) / self.y_std
            loss = F.mse_loss(pred, y) + float(cfg["rank_weight"]) * self._centred_mse(pred, y, ti, n_tasks)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if check is not None and (epoch + 1) % int(cfg["eval_every"]) == 0 and check():
                break

    def _validate(self, val: np.ndarray) -> np.ndarray:
        """Within-task Pearson of the prediction on each ``val`` task, from the other tasks' accuracies only."""
        d = self._training
        acc, known = d["acc"], d["known"]
        held = known & torch.from_numpy(val)[:, None]
        self.net.eval()
        with torch.no_grad():
            vt, vm = torch.nonzero(held, as_tuple=True)
            vp = self._forward(d["task_x"], torch.where(known & ~held, acc, torch.nan), d["scores_z"], d["present"],
                               vt, vm, d["loo"][vt, vm])
            grid = torch.full(acc.shape, torch.nan)
            grid[vt, vm] = vp
        return masked_row_pearson(torch.nan_to_num(grid), acc, held)[val]

    @staticmethod
    def _centred_mse(pred, y, ti, n_tasks) -> torch.Tensor:
        """MSE between prediction and truth after removing each task's mean (only the within-task order matters)."""
        count = torch.zeros(n_tasks).index_add_(0, ti, torch.ones_like(y)).clamp(min=1)
        mp = torch.zeros(n_tasks).index_add_(0, ti, pred) / count
        my = torch.zeros(n_tasks).index_add_(0, ti, y) / count
        return F.mse_loss(pred - mp[ti], y - my[ti])

    # --------------------------------------------------------------------------------- predicting
    def _scores(self, view: TaskView) -> np.ndarray:
        acc = torch.from_numpy(self.accuracy.copy())
        scores = self.scores.copy()
        task_x = torch.from_numpy(self.task_features)
        if view.index is None:  # a task never seen: one more node
            task_x = torch.cat([task_x, torch.from_numpy(view.features)[None]])
            acc = torch.cat([acc, torch.full((1, acc.shape[1]), torch.nan)])
            scores = np.concatenate([scores, view.scores[None]])
            t = len(self.tasks)
        else:
            t = view.index
        row = acc[t]
        observed = torch.from_numpy(view.observed)
        acc[t] = torch.where(torch.isfinite(observed), observed, row)
        scores_z = torch.from_numpy(self._standardized_scores(scores))
        present = self._present(scores)
        mi = torch.arange(len(self.models))
        prior = torch.from_numpy(self.base.of(view))
        with torch.no_grad():
            pred = self._forward(task_x, acc, scores_z, present, torch.full_like(mi, t), mi, prior)
        return (pred * self.y_std + self.y_mean).numpy()

    # -------------------------------------------------------------------------------- persistence
    def _state(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "y": torch.tensor([self.y_mean, self.y_std]),
                "task_mu": self.task_mu, "task_sd": self.task_sd, "base": self.base.state()}

    def _restore(self, state: dict[str, Any]) -> None:
        cfg = self.config
        self.net = GraphNet(len(self.models), self.model_features.shape[1], self.task_features.shape[1],
                            len(self.score_columns) if cfg["use_scores"] else 0, int(cfg["hidden"]),
                            int(cfg["heads"]), int(cfg["layers"]), float(cfg["dropout"]))
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self.y_mean, self.y_std = (float(v) for v in state["y"])
        self.task_mu, self.task_sd = state["task_mu"], state["task_sd"]
        self.base = PriorBase(self, cfg["prior"], bool(cfg["use_scores"])).restore(state["base"])
