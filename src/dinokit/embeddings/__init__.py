"""The embedding store (Parquet shards), FAISS indexes, nearest neighbours and the duplicate graph: the
layer under every job that reads embeddings."""
from .index import INDEX_KINDS, EmbeddingIndex, Hit, build_faiss_index, build_index, normalized
from .neighbors import DUPLICATE_NEIGHBOURS, components, duplicate_edges, duplicate_groups, duplicate_labels, knn
from .store import (
    EmbeddingsFileError,
    ShardWriter,
    bad_vectors,
    embedded_paths,
    exclusive_output,
    finished_paths,
    open_embeddings,
    read_embeddings,
    read_failures,
    read_metadata,
    remaining_failures,
)

__all__ = ["INDEX_KINDS", "EmbeddingIndex", "Hit", "build_index", "build_faiss_index", "normalized", "knn", "components",
           "duplicate_edges", "duplicate_labels", "duplicate_groups", "DUPLICATE_NEIGHBOURS", "read_embeddings",
           "ShardWriter", "finished_paths", "read_failures", "read_metadata", "EmbeddingsFileError", "bad_vectors",
           "open_embeddings", "embedded_paths", "remaining_failures", "exclusive_output"]
