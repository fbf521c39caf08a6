"""Ground truth by training: linear probes of frozen features and full fine-tuning grids, recorded in a resumable
records table."""

from .linear import DEFAULT_CS, ProbeResult, holdout, linear_probe, split_feature_set
from .records import PROTOCOLS, compact_records, export_records, read_records, records_path, remove_records
from .sweep import (
    SFDA_LRS,
    SFDA_WDS,
    ProbeJob,
    job_from_features,
    job_from_registry,
    parse_cs,
    run_full_grid,
    run_probes,
)

__all__ = [
    "DEFAULT_CS", "PROTOCOLS", "SFDA_LRS", "SFDA_WDS", "ProbeJob", "ProbeResult", "compact_records", "export_records", "holdout", "job_from_features",
    "job_from_registry", "linear_probe", "parse_cs", "read_records", "records_path", "remove_records", "run_full_grid", "run_probes",
    "split_feature_set",
]
