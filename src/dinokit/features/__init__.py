"""Features at scale: embedding folders into Parquet, searching them, and pictures of the features."""
from .embed import EmbedSummary, UsageError, embed
from .index import EmbeddingIndex, Hit, build_index, duplicate_groups
from .pooling import POOLINGS, pool
from .search import dedup, embed_images, search
from .store import read_embeddings
from .viz import pca_figure

__all__ = ["embed", "EmbedSummary", "UsageError", "search", "dedup", "embed_images", "build_index",
           "EmbeddingIndex", "Hit", "duplicate_groups", "pool", "POOLINGS", "read_embeddings", "pca_figure"]
