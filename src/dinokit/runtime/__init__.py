"""How a model runs fast, applied by the jobs explicitly: the CPU fast path, the opt-in backends, export."""
from .backends import BACKENDS, BackendError, accelerate
from .cpu import fast_path, is_fast, plain

__all__ = ["accelerate", "BACKENDS", "BackendError", "fast_path", "plain", "is_fast"]
