"""Features at scale: embedding folders into Parquet, searching them, and pictures of the features."""
from ..lazy import lazy_exports

ENGINES = ("local", "ray")  # embed: this process (or each torchrun rank), or Ray Data (ray_engine.py)

_EXPORTS = {  # module → the names it gives the package, imported on first use
    "..embeddings": ["EmbeddingIndex", "Hit", "build_index", "duplicate_groups", "read_embeddings"],
    ".embed": ["EmbedSummary", "UsageError", "embed"],
    ".pooling": ["POOLINGS", "pool"],
    ".search": ["dedup", "embed_images", "embed_texts", "search"],
    ".viz": ["pca_figure"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["embed", "EmbedSummary", "UsageError", "search", "dedup", "embed_images", "embed_texts", "build_index",
           "EmbeddingIndex", "Hit", "duplicate_groups", "pool", "POOLINGS", "read_embeddings", "pca_figure"]
