"""Features at scale: embedding folders into Parquet, searching them, and pictures of the features."""
from ..embeddings import EmbeddingIndex, Hit, build_index, duplicate_groups, read_embeddings
from .embed import EmbedSummary, UsageError, embed
from .pooling import POOLINGS, pool
from .search import dedup, embed_images, search
from .viz import pca_figure

__all__ = ["embed", "EmbedSummary", "UsageError", "search", "dedup", "embed_images", "build_index",
           "EmbeddingIndex", "Hit", "duplicate_groups", "pool", "POOLINGS", "read_embeddings", "pca_figure"]
