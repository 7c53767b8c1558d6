"""How a model runs fast, applied by the jobs explicitly: the CPU fast path, the opt-in backends, export."""
from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".backends": ["BACKENDS", "BackendError", "accelerate"],
    ".cpu": ["fast_path", "is_fast", "plain"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

FORMATS = ("onnx", "torchscript", "exported-program")  # what `export` writes (here: the CLI reads it without torch)

__all__ = ["FORMATS", "accelerate", "BACKENDS", "BackendError", "fast_path", "plain", "is_fast"]
