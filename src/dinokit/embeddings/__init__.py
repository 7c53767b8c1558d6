"""The embedding store (Parquet shards), FAISS indexes, nearest neighbours and the duplicate graph: the
layer under every job that reads embeddings."""
from .index import INDEX_KINDS, EmbeddingIndex, Hit, build_faiss_index, build_index, normalized
from .neighbors import DUPLICATE_NEIGHBOURS, components, duplicate_edges, duplicate_groups, duplicate_labels, knn
from .store import ShardWriter, finished_paths, read_embeddings, read_failures, read_metadata

__all__ = ["INDEX_KINDS", "EmbeddingIndex", "Hit", "build_index", "build_faiss_index", "normalized", "knn", "components",
           "duplicate_edges", "duplicate_labels", "duplicate_groups", "DUPLICATE_NEIGHBOURS", "read_embeddings",
           "ShardWriter", "finished_paths", "read_failures", "read_metadata"]
