"""The fast path dinokit's jobs put a model on before they run it: the same numbers to float32 rounding,
faster, at inference only. A model a user builds or loads is plain; `fast_path(model)` is explicit.

It swaps the classes of the model's own modules in place for subclasses that add no parameters (the
state dict, `isinstance` checks and hooks stay those of the plain model); `plain(model)` undoes it, and
pickles and deep copies of a fast model are plain. What the subclasses do, each only under
`torch.inference_mode()`, in eval mode, outside graph capture (tracing, export, compile):

- `nn.Linear` on CPU float32 runs through oneDNN with its weight packed once, instead of MKL's sgemm
  (docs/performance.md has the measured gain). The packed copy is rebuilt when the weight changes (a new
  storage or an in-place update) and costs as much memory again as the Linear weights.
- The MLP's GELU and the blocks' LayerScale and residual add overwrite their own fresh intermediates,
  unless a forward hook could be holding one: fewer multi-megabyte allocations, whose page faults cost as
  much as the GELU itself.
- A large CPU batch runs in pieces of about `CPU_TOKENS_PER_CHUNK` tokens (activations stay in cache),
  and with several threads the pieces run side by side, one intra-op thread each, as long as that keeps
  every thread busy. A hook sees whole batches, in order, in the caller's thread: no pieces then.
- Interpolated position embeddings are cached per image size.
- DINOv3's RoPE rotates the fresh query/key projection in place, and its (always zero) key bias is not taken
  out again unless one was set.

These rely on private PyTorch APIs (`torch.ops.mkldnn`, version counters, the global hook registry);
that is why they live here and not in `dinokit.models`.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torch.nn.modules.module import _global_forward_hooks

from ..models.layers import Attention, Block, LayerScale, Mlp
from ..models.rope import apply_rope_
from ..models.vit import VisionTransformerBase

_CACHES = ("_dinokit_packed", "_dinokit_pos_cache")  # runtime state kept on a module, never pickled


def fast_path(model: nn.Module, *, packed_linear: bool = True, side_by_side: bool = True) -> nn.Module:
    """Put `model` (any module holding dinokit ViTs) on the fast path, in place; returns it. Idempotent.
    `packed_linear=False` keeps PyTorch's own Linear; `side_by_side=False` runs the pieces of a batch one
    after the other."""
    for module in model.modules():
        mixin = _mixin_for(module, packed_linear)
        if mixin is not None:
            module.__class__ = _fast_class(type(module), mixin)
        if isinstance(module, _PiecesViT):
            module.side_by_side = side_by_side
    return model


def plain(model: nn.Module) -> nn.Module:
    """Undo `fast_path`, in place; returns `model`."""
    for module in model.modules():
        if isinstance(module, _Fast):
            module.__class__ = module._plain_class
            for name in (*_CACHES, "side_by_side"):
                module.__dict__.pop(name, None)
    return model


def is_fast(model: nn.Module) -> bool:
    return any(isinstance(m, _Fast) for m in model.modules())


def capturing_graph() -> bool:
    """Under torch.jit.trace, torch.export or torch.compile: no caches or data-dependent paths."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def in_place_ok(module: nn.Module) -> bool:
    """Whether `module` may overwrite its own intermediate tensors: at inference (nothing keeps them for a
    backward pass), in eval mode (no dropout between), outside graph capture, and with no forward hook on it
    or inside it that could be holding an output."""
    if not torch.is_inference_mode_enabled() or module.training or capturing_graph() or _global_forward_hooks:
        return False
    return not any(m._forward_hooks for m in module.modules())


# --- the fast classes ----------------------------------------------------------------------------------
class _Fast:
    """Mixin of every fast class: pickles and copies as the plain class, without the runtime's caches."""

    _plain_class: type

    def __reduce_ex__(self, protocol):
        reduced = list(super().__reduce_ex__(protocol))
        reduced[:2] = [_new_plain, (self._plain_class,)]
        if isinstance(reduced[2], dict):
            reduced[2] = {k: v for k, v in reduced[2].items() if k not in (*_CACHES, "side_by_side")}
        return tuple(reduced)


def _new_plain(cls: type):
    return cls.__new__(cls)


_PACKED_LINEAR_OP = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class _PackedLinear(_Fast):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and torch.is_inference_mode_enabled() and not capturing_graph()):
            packed = self._packed_weight()
            if packed is not None:
                return torch.ops.mkldnn._linear_pointwise(x, packed, self.bias, "none", [], "")
        return super().forward(x)

    def _packed_weight(self) -> torch.Tensor | None:
        weight = self.weight
        try:
            key = (weight.data_ptr(), weight._version)
        except RuntimeError:  # an inference tensor has no version counter: nothing tells us when it changes
            return None
        cached = self.__dict__.get("_dinokit_packed")
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
            self.__dict__["_dinokit_packed"] = cached
        return cached[1]


class _InPlaceMlp(_Fast):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (type(self.act) is nn.GELU and in_place_ok(self)):
            return super().forward(x)
        hidden = torch.ops.aten.gelu_(self.fc1(x), approximate=self.act.approximate)  # the largest activation
        return self.fc2(hidden)


class _InPlaceAttention(_Fast):
    """DINOv3's extra steps on the fresh projection itself: the key bias is taken out only when one is set
    (the loaders zero it), and RoPE rotates the patch queries and keys in place (float32)."""

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.mask_k_bias and in_place_ok(self)):
            return super().project_qkv(x)
        qkv, dim = self.qkv(x), x.shape[-1]
        key_bias = self.qkv.bias[dim:2 * dim]
        if key_bias.any():
            qkv[..., dim:2 * dim] -= key_bias
        return qkv

    def heads(self, qkv: torch.Tensor, rope):
        if rope is None or qkv.dtype != torch.float32 or not in_place_ok(self):
            return super().heads(qkv, rope)
        B, N, _ = qkv.shape
        qkv = qkv.reshape(B, N, 3, self.num_heads, -1)
        apply_rope_(qkv[:, :, :2].permute(0, 2, 3, 1, 4), *rope)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)


class _InPlaceBlock(_Fast):
    def forward(self, x, need_weights: bool = False, head_mask: torch.Tensor | None = None, rope=None):
        if not in_place_ok(self):
            return super().forward(x, need_weights=need_weights, head_mask=head_mask, rope=rope)
        attn, weights = self.attn(self.norm1(x), need_weights=need_weights, head_mask=head_mask, rope=rope)
        x = _scale_(attn, self.ls1).add_(x)  # the branches' outputs are fresh: scale and add into them
        return _scale_(self.mlp(self.norm2(x)), self.ls2).add_(x), weights


def _scale_(x: torch.Tensor, layer_scale: nn.Module) -> torch.Tensor:
    return x.mul_(layer_scale.gamma) if isinstance(layer_scale, LayerScale) else layer_scale(x)


class _PiecesViT(_Fast):
    CPU_TOKENS_PER_CHUNK = 2048  # ~8 images at 224 px (docs/performance.md)
    side_by_side = True

    def run_blocks(self, x: torch.Tensor, class_token_only: bool = False, rope=None) -> torch.Tensor:
        per_piece, streams = self.split_batch(x)
        if not per_piece:
            return super().run_blocks(x, class_token_only, rope)
        run = super().run_blocks
        pieces = list(x.split(per_piece))
        if streams > 1:
            outputs = _side_by_side(lambda piece: run(piece, class_token_only, rope), pieces, streams)
        else:
            outputs = [run(piece, class_token_only, rope) for piece in pieces]
        return torch.cat(outputs, dim=0)

    def split_batch(self, x: torch.Tensor) -> tuple[int, int]:
        """(images per piece, threads side by side) for tokens `x`; (0, 1): in one go."""
        if capturing_graph() or x.device.type != "cpu" or torch.is_grad_enabled():  # exports keep a dynamic batch
            return 0, 1
        B, N = x.shape[:2]
        largest = max(1, self.CPU_TOKENS_PER_CHUNK // N) if B * N >= 2 * self.CPU_TOKENS_PER_CHUNK else B
        streams = self._streams()
        per_piece = images_per_stream(B, streams, largest) if streams > 1 else 0
        if per_piece:  # always fewer than B: at least two streams, and one image alone is never split
            return per_piece, streams
        return (largest, 1) if largest < B else (0, 1)

    def _streams(self) -> int:
        threads = torch.get_num_threads()
        if not self.side_by_side or threads < 2 or getattr(_IN_POOL, "active", False) or not in_place_ok(self):
            return 1
        return threads

    def position_embeddings(self, image_hw: tuple[int, int]) -> torch.Tensor:
        if torch.is_grad_enabled() or capturing_graph():
            return super().position_embeddings(image_hw)
        pos = self.pos_embed  # inference tensors keep no version counter; they change only through a new tensor
        version = -1 if pos.is_inference() else pos._version
        key = (tuple(image_hw), self.interpolate_mode, pos.dtype, pos.device, version, pos.data_ptr())
        cache = self.__dict__.setdefault("_dinokit_pos_cache", {})
        if key not in cache:
            if len(cache) >= 16:
                cache.clear()
            cache[key] = super().position_embeddings(image_hw)
        return cache[key]


def _mixin_for(module: nn.Module, packed_linear: bool) -> type | None:
    if isinstance(module, _Fast):
        return None
    if type(module) is nn.Linear:
        return _PackedLinear if packed_linear and _PACKED_LINEAR_OP else None
    if isinstance(module, Mlp):
        return _InPlaceMlp
    if isinstance(module, Attention):
        return _InPlaceAttention
    if isinstance(module, Block):
        return _InPlaceBlock
    if isinstance(module, VisionTransformerBase):
        return _PiecesViT
    return None


_FAST_CLASSES: dict[tuple[type, type], type] = {}


def _fast_class(cls: type, mixin: type) -> type:
    """`cls` with `mixin` in front, one per pair, named as `cls` (reprs and error messages stay the same)."""
    key = (cls, mixin)
    if key not in _FAST_CLASSES:
        _FAST_CLASSES[key] = type(cls.__name__, (mixin, cls), {
            "_plain_class": cls, "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    return _FAST_CLASSES[key]


# --- pieces of a batch side by side, one CPU thread each ---------------------------------------------------
def images_per_stream(batch: int, streams: int, largest: int) -> int:
    """Images per piece when `batch` images run side by side on `streams` one-thread workers, pieces of at
    most `largest` images; 0 when that would leave over a quarter of the threads idle (batch 8 on 16 threads:
    8 single-threaded pieces would waste half the machine, every operation on all 16 threads does not)."""
    per_piece = min(largest, -(-batch // streams))
    rounds = -(-batch // (per_piece * streams))
    busy = batch / (rounds * streams * per_piece)
    return per_piece if busy >= 0.75 else 0


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, pool): a forked child starts its own
_POOL_LOCK = threading.Lock()
_IN_POOL = threading.local()


def _side_by_side(run, pieces: list[torch.Tensor], streams: int) -> list[torch.Tensor]:
    """[run(piece) for piece in pieces], the pieces spread over `streams` single-threaded workers."""
    def task(piece):
        _IN_POOL.active = True
        with torch.inference_mode():  # a thread-local mode: every worker enters it itself
            return run(piece)

    return list(_pool(streams).map(task, pieces))


def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per process (rebuilt if the thread count changes). Each worker sets its own OpenMP/MKL
    thread count to 1 (thread-local settings); torch's global count, which that call also overwrites, is
    then restored for everyone else."""
    global _POOL, _POOL_LOCK
    if _POOL is not None and _POOL[0] != os.getpid():  # forked: the parent's threads and lock are not ours
        _POOL, _POOL_LOCK = None, threading.Lock()
    with _POOL_LOCK:
        if _POOL is None or _POOL[1] != threads:
            if _POOL is not None:
                _POOL[2].shutdown(wait=False)
            started = threading.Barrier(threads + 1)

            def start():
                torch.set_num_threads(1)
                started.wait()

            pool = ThreadPoolExecutor(threads, thread_name_prefix="dinokit-cpu", initializer=start)
            for _ in range(threads):  # every worker is started (and blocked in `start`) before we go on
                pool.submit(lambda: None)
            started.wait()
            torch.set_num_threads(threads)
            _POOL = (os.getpid(), threads, pool)
        return _POOL[2]
