"""Readers of published fine-tune record collections into ``Records`` (files are read by path, never bundled).

* ``load_domainnet(folder)``: the graph seed's DomainNet benchmark (10 ImageNet models x 270 tasks, model
  and task metadata, the seed's precomputed task embedding) — github.com/davechenxy/ModelRecommendation.
* ``load_transfergraph(folder, "image" | "text")``: TransferGraph (Li et al., ICDE'24) fine-tune records of
  ~180 Hugging Face models on 13 image / 10 text datasets, model metadata, dataset size/#classes, the
  dataset-to-dataset domain-similarity distances (as task embedding) and LogME / Reg-H-score per pair.
* ``load_model_spider(folder, "single" | "multi")``: Model Spider's (NeurIPS'23) fine-tune ground truth, 10
  ImageNet models x 8 classification targets with 9 baseline scores per pair, or 66 models pre-trained on 22
  source datasets x 7 targets (architecture and source dataset as model metadata).
* ``load_benchmark(folder)``: our own zoo's records from a ``modelrank benchmark`` run, with its scores,
  metadata and the class prototypes of every model's cached features on every task.
* ``read_records_csv(path)`` (in ``records``): the generic ``dataset,model,accuracy`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidInputError, MissingResourceError, error_reason
from ..evaluate.tables import NAME_COLUMNS
from ..tabular import read_csv_file
from .records import Records, records_from_frame

DOMAINNET_EMBEDDINGS = ("seed", "text", "none")
# In the seed's 852-d task features, columns 319..851 are the continuous (text-embedding-like) block; the
# columns before it re-encode metadata that we encode ourselves (see anchors/graph/SOURCES.md).
SEED_TEXT_BLOCK = slice(319, 852)


def _need(path: Path) -> Path:
    if not path.exists():
        raise MissingResourceError(f"expected file not found: {path}")
    return path


def _columns(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` (read from ``path``) when it has ``columns``: a published file edited, or another file under its
    name, was a KeyError traceback (exit 1) where the loader first used the column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{path} lacks column(s) {missing} (has {list(frame.columns)[:8]})")
    return frame


def _read_csv(path: Path, columns: Sequence[str] = (), **options) -> pd.DataFrame:
    return _columns(read_csv_file(_need(path), "table", text_columns=NAME_COLUMNS, **options), path, columns)


def _read_transfergraph_csv(path: Path, columns: Sequence[str] = (), **options) -> pd.DataFrame:
    # TransferGraph's published tables have truncated lines (2 in the image scores, whose metric is then blank and
    # drops out of the pivot; 1 in the text model configs, short of only its accuracy, which is not metadata).
    frame = read_csv_file(_need(path), "table", allow_ragged=True, text_columns=NAME_COLUMNS, **options)
    return _columns(frame, path, columns)


def load_domainnet(folder: str | Path, embedding: str = "seed") -> Records:
    """The graph seed's DomainNet records: 10 models x 270 tasks (6 domains x 45), accuracy in [0, 1].

    Task names are the record matrix's column names (``task{k}_{domain}_{samples per class}``); the metadata
    rows line up with them by position (checked: domain and samples per class agree for all 270).
    ``embedding``: "seed" = the seed's precomputed continuous task block (533-d, one per domain/split),
    "text" = all-MiniLM-L6-v2 embedding of "domain: class names" (``modelrank.text``, extra ``text``), "none".
    Metadata column names are the seed's, with its quirks made explicit: ``num_pre_class`` is samples per
    class and ``categories`` the number of classes.
    """
    folder = Path(folder)
    if embedding not in DOMAINNET_EMBEDDINGS:
        raise InvalidInputError(f"embedding must be one of {DOMAINNET_EMBEDDINGS}, not {embedding!r}")
    wide = _read_csv(folder / "record_domainnet_10_270.csv", index_col=0).copy()
    tasks = list(wide.columns)
    table = wide.copy().rename_axis("model").reset_index().melt(id_vars="model", var_name="dataset", value_name="accuracy")
    model_meta = _read_csv(folder / "source_model_meta_data.csv", ["model name"]).set_index("model name")
    task_columns = ["domain", "Labels"] if embedding == "text" else ["domain"]
    task_meta = _read_csv(folder / "target_dataset_meta_data.csv", task_columns)
    if len(task_meta) != len(tasks):
        raise InvalidInputError(f"{len(task_meta)} task metadata rows for {len(tasks)} record columns")
    unnamed = [t for t in tasks if str(t).count("_") < 2]  # an IndexError below
    if unnamed:
        raise InvalidInputError(f"record columns must be named task<k>_<domain>_<samples per class>, not {unnamed[:3]}")
    domains = [t.split("_")[1] for t in tasks]
    if list(task_meta["domain"]) != domains:
        raise InvalidInputError("task metadata rows do not line up with the record columns (domain mismatch)")
    task_meta.index = pd.Index(tasks)
    task_meta = task_meta.rename(columns={"num_pre_class": "samples_per_class", "categories": "num_classes"})
    task_embed = None
    if embedding == "seed":
        path = _need(folder / "DomainNet_target_embedding.npy")
        try:
            seed = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:  # damaged, or an object array that would need unpickling
            raise InvalidInputError(f"cannot read {path}: {error_reason(exc)}") from None
        if seed.shape != (len(tasks), SEED_TEXT_BLOCK.stop):  # other rows: a pandas ValueError; fewer columns: none
            raise InvalidInputError(f"{path} holds an array of shape {seed.shape}; the seed's embedding is one row "
                                    f"of {SEED_TEXT_BLOCK.stop} values per task ({len(tasks)} tasks)")
        block = seed[:, SEED_TEXT_BLOCK]
        task_embed = pd.DataFrame(block, index=tasks).rename(columns=str)
    elif embedding == "text":
        from ..text import encode_texts

        texts = (task_meta["domain"] + ": " + task_meta["Labels"].str.replace("_", " ")).tolist()
        task_embed = pd.DataFrame(encode_texts(texts), index=tasks).rename(columns=str)
    return Records(table, model_meta=model_meta, task_meta=task_meta, task_embed=task_embed,
                   name=f"domainnet[{embedding}]", info={"domain_column": "domain"})


TRANSFERGRAPH_MODALITIES = {
    "image": ("image_classification", "corr_domain_similarity_google_vit_base_patch16_224_imagenet.csv"),
    "text": ("sequence_classification", "corr_domain_similarity_gpt2_gpt.csv"),
}
TRANSFERGRAPH_TARGETS = {  # the 8 held-out datasets of the published result tables
    "image": ["stanfordcars", "svhn", "caltech101", "pets", "cifar100", "flowers", "smallnorb_label_elevation", "dtd"],
    "text": ["rotten_tomatoes", "tweet_eval/irony", "tweet_eval/sentiment", "tweet_eval/offensive", "glue/cola",
             "glue/sst2", "tweet_eval/hate", "tweet_eval/emotion"],
}
MODEL_META_COLUMNS = ["input_shape", "output_shape", "architectures", "dataset", "#labels", "number_of_labels",
                      "accuracy", "model_type", "number_of_parameters", "memory_consumption"]


def load_transfergraph(folder: str | Path, modality: str = "image", model_text: bool = False) -> Records:
    """TransferGraph's fine-tune records for ``modality`` "image" or "text" (full fine-tuning runs only).

    Accuracy = best ``eval_accuracy`` over a pair's runs (what TransferGraph's result tables use). Text
    LoRA runs are dropped, as are records of models without a metadata row (3 text models) and rows whose
    dataset is not a dataset (2 malformed text rows). Task embedding = the row of the domain-similarity
    distance matrix (distance of the task to each reference dataset); scores = LogME and Reg-H-score.
    ``model_text``: add an all-MiniLM-L6-v2 embedding of "model name, pre-training dataset" per model.
    """
    if modality not in TRANSFERGRAPH_MODALITIES:
        raise InvalidInputError(f"modality must be one of {sorted(TRANSFERGRAPH_MODALITIES)}, not {modality!r}")
    sub, sim_file = TRANSFERGRAPH_MODALITIES[modality]
    folder = Path(folder) / sub
    raw = _read_transfergraph_csv(folder / "records.csv", ["model", "finetuned_dataset", "eval_accuracy"], index_col=0)
    if "peft_method" in raw.columns:
        raw = raw[raw["peft_method"].isna()]
    task_meta = _read_transfergraph_csv(folder / "target_dataset_features.csv", ["finetune_dataset"])
    task_meta = task_meta.set_index("finetune_dataset")
    sim = _read_transfergraph_csv(folder / sim_file, index_col=0)
    model_meta = _read_transfergraph_csv(folder / "model_config_dataset.csv", ["model"])
    model_meta = model_meta.drop_duplicates("model").set_index("model")
    model_meta = model_meta[[c for c in MODEL_META_COLUMNS if c in model_meta.columns]]
    frame = raw.rename(columns={"finetuned_dataset": "dataset", "eval_accuracy": "accuracy"})
    frame = frame[frame["accuracy"].notna() & frame["dataset"].isin(task_meta.index) & frame["dataset"].isin(sim.index)
                  & frame["model"].isin(model_meta.index)]
    dropped = len(raw) - len(frame)
    tasks = sorted(set(frame["dataset"]))
    scores = _read_transfergraph_csv(folder / "transferability_score_records.csv",
                                     ["target_dataset", "model", "metric", "score"], index_col=0)
    scores = scores.assign(metric=scores["metric"].str.replace("TransferabilityMethod.", "", regex=False).str.lower())
    scores = scores.pivot_table(index=["target_dataset", "model"], columns="metric", values="score", aggfunc="last")
    scores = scores.reset_index().rename(columns={"target_dataset": "dataset"}).rename_axis(columns=None)
    task_embed = sim.loc[tasks].rename(columns=str)
    task_embed = task_embed.loc[:, ~task_embed.columns.duplicated()]
    models = sorted(set(frame["model"]))
    model_embed = None
    if model_text:
        from ..text import encode_texts

        texts = [f"{m.replace('/', ' ').replace('-', ' ').replace('_', ' ')}, pre-trained on {model_meta.loc[m, 'dataset']}"
                 for m in models]
        model_embed = pd.DataFrame(encode_texts(texts), index=models).rename(columns=str)
    records = records_from_frame(
        frame, aggregate="max", model_meta=model_meta.loc[models], task_meta=task_meta.loc[tasks],
        task_embed=task_embed, model_embed=model_embed, scores=scores[scores["model"].isin(models)],
        name=f"transfergraph-{modality}",
    )
    records.info.update({"targets": TRANSFERGRAPH_TARGETS[modality], "dropped_rows": int(dropped)})
    return records


MODEL_SPIDER_KINDS = ("single", "multi")


def load_model_spider(folder: str | Path, kind: str = "single", zoo42: bool = False) -> Records:
    """Model Spider's public records (anchors/model-spider): few tasks, so the learners' small-sample regime.

    ``kind="single"``: ``finetune_accuracy.csv`` restricted to the 8 classification targets (dSprites and
    UTKFace are regression errors on another scale), with the 9 baseline scores of ``baseline_results.csv``
    (H-Score, LEEP, LogME, ...) and the architecture as model metadata. ``kind="multi"``:
    ``finetune_accuracy_multisource.csv``, 66 models (architecture x source dataset) x 7 targets, no scores;
    ``zoo42``: only the 42 models the Model Spider code keeps.
    """
    folder = Path(folder)
    if kind not in MODEL_SPIDER_KINDS:
        raise InvalidInputError(f"kind must be one of {MODEL_SPIDER_KINDS}, not {kind!r}")
    if kind == "single":
        frame = _read_csv(folder / "finetune_accuracy.csv", ["dataset", "model", "accuracy"])
        scores = _read_csv(folder / "baseline_results.csv", ["Dataset", "Model"])
        scores = scores.rename(columns={"Dataset": "dataset", "Model": "model"})
        frame = frame[frame["dataset"].isin(set(scores["dataset"]))]
        model_meta = pd.DataFrame({"architecture": [m.rstrip("0123456789_") for m in sorted(set(frame["model"]))]},
                                  index=sorted(set(frame["model"])))
        return records_from_frame(frame, aggregate=None, scores=scores, model_meta=model_meta,
                                  name="model-spider-single")
    frame = _read_csv(folder / "finetune_accuracy_multisource.csv",
                      ["dataset", "model", "accuracy", "architecture", "source_dataset",
                       *(["in_42_model_zoo"] if zoo42 else [])])
    if zoo42:
        frame = frame[frame["in_42_model_zoo"] == 1]
    model_meta = frame.drop_duplicates("model").set_index("model")[["architecture", "source_dataset"]]
    return records_from_frame(frame, aggregate=None, model_meta=model_meta, name="model-spider-multi")


#: the ``KIND:FOLDER`` records specs of ``load_records``
RECORD_KINDS = ("domainnet", "transfergraph-image", "transfergraph-text", "model-spider", "model-spider-multi",
                "benchmark")


def load_records(spec: str, task_meta: str | Path | None = None, model_meta: str | Path | None = None) -> Records:
    """Records from a command-line spec: a ``dataset,model,accuracy`` CSV path, ``domainnet:FOLDER``,
    ``transfergraph-image:FOLDER``, ``transfergraph-text:FOLDER``, ``model-spider:FOLDER``,
    ``model-spider-multi:FOLDER`` or ``benchmark:FOLDER`` (a ``modelrank
    benchmark`` run, with its feature cache at ``$MODELRANK_CACHE``). ``task_meta`` / ``model_meta``: optional
    CSVs whose first column is the task / model name (only with a CSV path)."""
    kind, _, folder = spec.partition(":")
    if folder and kind in RECORD_KINDS and (task_meta is not None or model_meta is not None):
        raise InvalidInputError(f"task and model metadata files go with a records CSV; {kind}:FOLDER brings its own")
    if folder and kind == "domainnet":
        return load_domainnet(folder)
    if folder and kind in ("transfergraph-image", "transfergraph-text"):
        return load_transfergraph(folder, kind.split("-")[1])
    if folder and kind in ("model-spider", "model-spider-multi"):
        return load_model_spider(folder, "multi" if kind.endswith("multi") else "single")
    if folder and kind == "benchmark":
        return load_benchmark(folder)
    from .records import read_records_csv

    records = read_records_csv(spec)
    side = {}
    for key, path in (("task_meta", task_meta), ("model_meta", model_meta)):
        if path is not None:
            meta = read_csv_file(path, f"{key} file", index_col=0)
            side[key] = meta.set_axis(meta.index.str.strip())  # as the records' names are read
    return Records(records.table, name=records.name, **side) if side else records


#: zoo.csv / tasks.csv columns that become model / task metadata (names and free text stay out).
BENCHMARK_MODEL_META = (
    "family", "base", "source_dataset", "num_classes", "params", "trained_params", "source_accuracy",
)
BENCHMARK_TASK_META = ("base", "domain", "classes", "samples")


def load_benchmark(
    folder: str | Path,
    protocol: str = "linear",
    cache_dir: str | Path | None = None,
    encoder: str | None = None,
    prototypes: bool = True,
    metrics: Sequence[str] | None = None,
) -> Records:
    """The records of a ``modelrank benchmark`` run (``<cache>/benchmark/<preset>/``): our own zoo's ground
    truth, with every side input Model Spider can use.

    * records: ``records.csv`` rows of ``protocol`` ("linear": the linear probe averaged over split seeds, or
      "full" fine-tuning), accuracy = that mean;
    * scores: the ``metrics`` columns of ``scores.csv`` (default: all; none with ``metrics=()``, for a learner
      that must rank a new dataset from one encoder's features; cheap for a new task, so held-out tasks keep them);
    * metadata: ``zoo.csv`` (family, base model, source data, #classes, #parameters, source accuracy) and
      ``tasks.csv`` (base dataset, domain shift, #classes, #samples); task embedding: the offline text
      encoder on "domain shift of base: class names", when it is installed;
    * ``prototypes``: the class prototypes of every (model, task) from the feature cache (``cache_dir``), i.e.
      each model's own features on the task (Model Spider's re-ranking), and the task prototypes of one
      general ``encoder`` (default: the first ImageNet model of the zoo) for the task tokens.
    """
    from ..evaluate.tables import is_annotation
    from ..extraction import load_feature_pairs
    from .prototypes import prototypes_of

    folder = Path(folder)
    raw = _benchmark_table(folder, "records.csv", None, ("dataset", "model", "accuracy"))
    protocols = raw["protocol"] if "protocol" in raw.columns else pd.Series("linear", index=raw.index)
    raw = raw[(protocols == protocol).to_numpy()]
    if raw.empty:
        found = sorted(set(protocols.dropna()))
        raise InvalidInputError(f"{folder / 'records.csv'} has no {protocol!r} records (it has: {found})")
    zoo = _benchmark_table(folder, "zoo.csv", "name", ("source_dataset",))
    tasks = _benchmark_table(folder, "tasks.csv", "task", ())
    scores = _read_csv(folder / "scores.csv").rename(columns={"Dataset": "dataset", "Model": "model"})
    scores = scores[[c for c in scores.columns if not is_annotation(c, scores.columns)]]  # timings, flags, ...
    if metrics is not None:
        unknown = sorted(set(metrics) - set(scores.columns))
        if unknown:
            raise InvalidInputError(f"scores.csv has no column(s) {unknown}; it has {sorted(scores.columns[2:])}")
        scores = scores[["dataset", "model", *metrics]]
    task_names, model_names = sorted(set(raw["dataset"])), sorted(set(raw["model"]))
    _benchmark_rows(zoo, model_names, folder / "zoo.csv", "model(s)")
    _benchmark_rows(tasks, task_names, folder / "tasks.csv", "task(s)")
    side: dict = {
        "model_meta": zoo.loc[model_names, [c for c in BENCHMARK_MODEL_META if c in zoo.columns]],
        "task_meta": tasks.loc[task_names, [c for c in BENCHMARK_TASK_META if c in tasks.columns]],
    }
    if len(scores.columns) > 2:  # ``metrics=()``: records without scores
        side["scores"] = scores[scores["dataset"].isin(task_names) & scores["model"].isin(model_names)]
    # the features first: a model missing from the cache is found before the text encoder loads
    if prototypes:
        if encoder is None:
            imagenet = [m for m in model_names if zoo.loc[m, "source_dataset"] == "imagenet-1k"]
            encoder = (imagenet or model_names)[0]

        recorded = list(dict.fromkeys((m, t) for t, m in raw[["dataset", "model"]].itertuples(index=False)))
        features = load_feature_pairs(
            list(dict.fromkeys(recorded + [(encoder, t) for t in task_names])), "all", cache_dir=cache_dir,
            extract_missing=False)
        side["model_task_prototypes"] = {pair: prototypes_of(features[pair]) for pair in recorded}
        side["task_prototypes"] = {t: prototypes_of(features[encoder, t]) for t in task_names}
    from ..text import encode_texts, text_encoder_available
    from .describe import BENCHMARK_TASK_TEXT

    info: dict = {}
    if text_encoder_available():
        _benchmark_table(folder, "tasks.csv", None, ("domain", "base", "class_names"), tasks.reset_index())
        texts = [BENCHMARK_TASK_TEXT.format(**tasks.loc[t].to_dict()) for t in task_names]
        side["task_embed"] = pd.DataFrame(encode_texts(texts), index=task_names).rename(columns=str)
        info["task_text"] = BENCHMARK_TASK_TEXT
    records = records_from_frame(raw, aggregate="mean", name=f"benchmark-{folder.name}-{protocol}", **side)
    records.info.update(info, encoder=encoder)
    return records


def _benchmark_table(folder: Path, name: str, key: str | None, needed: Sequence[str],
                     frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """``name`` of a benchmark results folder (``frame``: as already read), checked for the columns ``needed`` and,
    given a ``key`` column, indexed by it (each name once). A file edited or from elsewhere was a KeyError or a
    pandas ValueError traceback (exit 1) deep in ``load_benchmark``."""
    path = folder / name
    frame = _columns(_read_csv(path) if frame is None else frame, path, ((key,) if key else ()) + tuple(needed))
    if key is None:
        return frame
    names = frame[key]
    if names.isna().any() or names.duplicated().any():
        twice = names[names.duplicated()].dropna().unique().tolist()[:3]
        raise InvalidInputError(f"{path}: every row needs its own {key} "
                                f"({'blank names' if names.isna().any() else f'{twice} more than once'})")
    return frame.set_index(key)


def _benchmark_rows(frame: pd.DataFrame, names: Sequence[str], path: Path, what: str) -> None:
    """Every one of ``names`` (from records.csv) has its row in ``frame`` (read from ``path``)."""
    lacking = [name for name in names if name not in frame.index]
    if lacking:
        raise InvalidInputError(f"{path} has no row for {len(lacking)} {what} of records.csv, e.g. {lacking[:3]}")
