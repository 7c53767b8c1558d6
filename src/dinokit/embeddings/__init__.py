"""The embedding store (Parquet shards), FAISS indexes, nearest neighbours and the duplicate graph: the
layer under every job that reads embeddings."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".index": ["EmbeddingIndex", "Hit", "build_faiss_index", "build_index", "normalized"],
    ".neighbors": ["DUPLICATE_NEIGHBOURS", "components", "duplicate_edges", "duplicate_groups", "duplicate_labels", "knn"],
    ".store": ["EmbeddingsFileError", "ShardWriter", "bad_vectors", "drop_unusable", "embedded_paths", "exclusive_output",
               "finished_paths", "open_embeddings", "read_embeddings", "read_failures", "read_metadata",
               "remaining_failures"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# an index folder's kinds and files, here so that the command line reads them without pyarrow or FAISS
INDEX_KINDS = ("auto", "flat", "ivf", "ivfpq")
INDEX_FILE, PATHS_FILE, META_FILE = "index.faiss", "paths.parquet", "meta.json"

__all__ = ["INDEX_KINDS", "EmbeddingIndex", "Hit", "build_index", "build_faiss_index", "normalized", "knn", "components",
           "duplicate_edges", "duplicate_labels", "duplicate_groups", "DUPLICATE_NEIGHBOURS", "read_embeddings",
           "ShardWriter", "finished_paths", "read_failures", "read_metadata", "EmbeddingsFileError", "bad_vectors",
           "drop_unusable", "open_embeddings", "embedded_paths", "remaining_failures", "exclusive_output"]
