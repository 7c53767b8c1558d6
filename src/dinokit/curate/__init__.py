"""The paper's data curation: deduplicate, decontaminate, retrieve from seeds, balance by hierarchical
k-means; each step reads and writes Parquet (paths, embeddings, provenance), and a YAML pipeline chains them."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    "..embeddings": ["knn"],
    ".balance": ["auto_levels", "balance", "balanced_sample", "entropy", "hierarchical_kmeans"],
    ".decontaminate": ["decontaminate"],
    ".dedup": ["dedup"],
    ".kmeans": ["kmeans"],
    ".pipeline": ["load_pipeline", "read_pool_arguments", "run_pipeline", "run_step", "step_settings"],
    ".pool": ["Pool", "read_pool", "write_pool"],
    ".result": ["StepResult"],
    ".retrieve": ["retrieve"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# each step's choices, here so that the command line reads them without loading the steps
KEEP = ("largest", "centroid", "first")  # dedup: which image of a group stays
MODES = ("sample", "cluster")  # retrieve: neighbours of each seed, or clusters that hold seeds
STRATEGIES = ("random", "closest")  # balance: which images of a cluster are kept

__all__ = ["KEEP", "MODES", "STRATEGIES",
           "Pool", "read_pool", "write_pool", "StepResult", "dedup", "decontaminate", "retrieve", "balance",
           "hierarchical_kmeans", "balanced_sample", "auto_levels", "entropy", "knn", "kmeans", "load_pipeline",
           "read_pool_arguments", "run_pipeline", "run_step", "step_settings"]
