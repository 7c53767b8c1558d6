"""The paper's data curation: deduplicate, decontaminate, retrieve from seeds, balance by hierarchical
k-means; each step reads and writes Parquet (paths, embeddings, provenance), and a YAML pipeline chains them."""
from ..embeddings import knn
from .balance import auto_levels, balance, balanced_sample, entropy, hierarchical_kmeans
from .decontaminate import decontaminate
from .dedup import dedup
from .kmeans import kmeans
from .pipeline import load_pipeline, read_pool_arguments, run_pipeline, run_step, step_settings
from .pool import Pool, read_pool, write_pool
from .result import StepResult
from .retrieve import retrieve

__all__ = ["Pool", "read_pool", "write_pool", "StepResult", "dedup", "decontaminate", "retrieve", "balance",
           "hierarchical_kmeans", "balanced_sample", "auto_levels", "entropy", "knn", "kmeans", "load_pipeline",
           "read_pool_arguments", "run_pipeline", "run_step", "step_settings"]
