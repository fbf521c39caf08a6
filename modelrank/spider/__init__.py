"""Learned model ranking for unseen tasks: baselines, a graph learner and Model Spider, trained on fine-tune records."""

from . import baselines, graph, model_spider, task_attention  # noqa: F401  (register the learners)
from .base import LEARNERS, Learner, learner_rows, load_learner, make_learner
from .loaders import load_benchmark, load_domainnet, load_model_spider, load_records, load_transfergraph
from .prototypes import class_prototypes, prototypes_of
from .records import Records, TaskInfo, read_records_csv, records_from_frame

__all__ = [
    "LEARNERS", "Learner", "Records", "TaskInfo", "class_prototypes", "learner_rows", "load_benchmark", "load_domainnet",
    "load_learner", "load_model_spider", "load_records", "load_transfergraph", "make_learner", "prototypes_of", "read_records_csv",
    "records_from_frame",
]
