"""`dinokit serve`: an HTTP service for embeddings, search and classification with dynamic batching, and a
page to search and review a collection (optional extra: `pip install 'dinokit[serve]'`)."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".app": ["create_app"],
    ".batching": ["DynamicBatcher", "Overloaded"],
    ".collection": ["Collection", "Refused"],
    ".server": ["SpawnedServer", "run_server"],
    ".service": ["PICTURES", "ServeLimits", "Service"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["create_app", "run_server", "SpawnedServer", "Service", "ServeLimits", "DynamicBatcher", "Overloaded",
           "Collection", "Refused", "PICTURES"]
