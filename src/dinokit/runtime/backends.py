"""Opt-in inference backends: each trades something (set-up time, a dependency, exactness) for speed.

`accelerate(model, backend)` returns a function pixel_values → last_hidden_state. The default, `eager`, is
dinokit's exact fast path (`runtime.cpu.fast_path`, applied to the model in place) and needs nothing
more. The others, and what they cost (docs/performance.md has
their measured speed-ups and their effect on the embeddings):

- `compile`: `torch.compile`; exact (≤ 1e-5); compiles on the first call of every new input shape.
- `onnxruntime`: the model is exported to ONNX once, at one image size, and run by ONNX Runtime (CUDA when
  the model is on a GPU and onnxruntime-gpu is installed); exact (≤ 1e-5); needs `onnxruntime`.
- `onnxruntime-int8`: the same export with int8 weights (ONNX Runtime dynamic quantisation); not exact.
- `int8`: PyTorch dynamic int8 quantisation of every Linear layer, CPU only; not exact.
- `cuda-graphs`: one CUDA graph per input shape, replayed; exact; removes the launch overhead of small
  batches on a GPU.

bf16 on CPU is never a default: on some CPUs that advertise AMX a bf16 matrix multiply kills the process
with "Illegal instruction". `cpu_bf16_works()` tries one in a child process first.
"""
from __future__ import annotations

import copy
import functools
import logging
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import BackendError
from .cpu import fast_path

BACKENDS = ("eager", "compile", "onnxruntime", "onnxruntime-int8", "int8", "cuda-graphs")
FIXED_SIZE_BACKENDS = ("onnxruntime", "onnxruntime-int8")
INEXACT_BACKENDS = ("onnxruntime-int8", "int8")
EXPORT_TOLERANCE = 1e-4  # the exported graph must give the eager numbers before it replaces them

Runner = Callable[[torch.Tensor], torch.Tensor]


def accelerate(model: nn.Module, backend: str = "eager", *, image_size: int | None = None) -> Runner:
    """A function pixel_values → last_hidden_state running `model` (a dinokit backbone) on `backend`.

    `image_size` is required by the ONNX Runtime backends, which export the model at that one size.
    """
    model = model.eval()
    device = next(model.parameters()).device
    if backend == "eager":
        fast_path(model)
        return lambda x: model(x).last_hidden_state
    if backend == "compile":
        compiled = torch.compile(model, options={"freezing": True})  # weights as constants: packed GEMMs
        return lambda x: compiled(x).last_hidden_state
    if backend in FIXED_SIZE_BACKENDS:
        if not image_size:
            raise BackendError(f"backend {backend!r} exports the model at one image size: give image_size")
        return OnnxRuntimeRunner(model, image_size, quantize=backend.endswith("int8"))
    if backend == "int8":
        if device.type != "cpu":
            raise BackendError("backend 'int8' (dynamic quantisation) runs on CPU only; use --device cpu")
        return _dynamic_int8(model)
    if backend == "cuda-graphs":
        if device.type != "cuda":
            raise BackendError("backend 'cuda-graphs' needs the model on a CUDA device")
        return CudaGraphRunner(fast_path(model))
    raise BackendError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _dynamic_int8(model: nn.Module) -> Runner:
    """int8 weights, activations quantised per batch: fbgemm/oneDNN int8 matrix multiplies."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao announces its move to torchao; the API still works in 2.14
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)

    def run(x):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantized(x).last_hidden_state

    return run


class OnnxRuntimeRunner:
    """The model exported to ONNX at one image size (checked against eager PyTorch), run by ONNX Runtime."""

    def __init__(self, model: nn.Module, image_size: int, quantize: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("the onnxruntime backends need `pip install onnxruntime` "
                               "(or onnxruntime-gpu)") from e
        from .export import export_model

        self.image_size = image_size
        self.device = next(model.parameters()).device
        cpu_model = copy.deepcopy(model).float().cpu()
        with tempfile.TemporaryDirectory(prefix="dinokit-ort-") as tmp:
            path = Path(tmp) / "model.onnx"
            diff = export_model(cpu_model, "onnx", path, image_size=image_size).max_abs_diff
            if diff > EXPORT_TOLERANCE:
                raise BackendError(f"the ONNX export differs from eager PyTorch by {diff:.1e} (> {EXPORT_TOLERANCE})")
            if quantize:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantized = Path(tmp) / "model.int8.onnx"
                previous = logging.root.manager.disable
                logging.disable(logging.WARNING)  # its advice to pre-process the graph: measured no faster
                try:
                    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
                finally:
                    logging.disable(previous)
                path = quantized
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.log_severity_level = 3
            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            self.session = ort.InferenceSession(str(path), options, providers=providers)  # read into memory

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if tuple(pixel_values.shape[-2:]) != (self.image_size, self.image_size):
            raise BackendError(f"this ONNX Runtime model was exported for {self.image_size}×{self.image_size} "
                               f"images, got {tuple(pixel_values.shape[-2:])}")
        array = pixel_values.detach().to("cpu", torch.float32).numpy()
        (out,) = self.session.run(["last_hidden_state"], {"pixel_values": array})
        return torch.from_numpy(out).to(pixel_values.device, pixel_values.dtype)


class CudaGraphRunner:
    """Captures one CUDA graph per input shape and dtype (after a warm-up) and replays it.

    At most `max_graphs` shapes are captured (each keeps its activations allocated); other shapes run eagerly.
    """

    def __init__(self, model: nn.Module, max_graphs: int = 8):
        self.model = model
        self.max_graphs = max_graphs
        self.graphs: dict = {}

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        key = (tuple(pixel_values.shape), pixel_values.dtype)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                return self.model(pixel_values).last_hidden_state
            self.graphs[key] = self._capture(pixel_values)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(pixel_values)
        graph.replay()
        return static_out.clone()

    def _capture(self, pixel_values: torch.Tensor):
        static_in = pixel_values.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: kernels chosen, position embeddings cached
            for _ in range(2):
                self.model(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.model(static_in).last_hidden_state
        return graph, static_in, static_out


_BF16_PROBE = ("import torch; a = torch.randn(256, 256, dtype=torch.bfloat16); "
               "torch.nn.functional.linear(a, a).sum().item(); (a @ a).sum().item()")


@functools.cache
def cpu_bf16_works() -> bool:
    """Whether bf16 matrix multiplies run on this CPU, tried in a child process (AMX may raise SIGILL)."""
    return _child_survives(_BF16_PROBE)


def require_device(device) -> torch.device:
    """The torch device of a `--device` value, or a `BackendError` saying why it cannot run here (an unknown
    name, CUDA asked on a machine where none is visible, an index past the GPUs there are)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise BackendError(f"--device {device!r} is not a device torch knows ({e}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise BackendError(f"--device {device}: no CUDA GPU is visible on this machine (torch {torch.__version__}, "
                               f"{built}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                               f"numbered from 0")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise BackendError(f"--device {device}: Apple's MPS is not available here; use --device cpu")
    return dev


def require_cpu_bf16() -> None:
    """BackendError unless a bf16 matrix multiply survived in a child process."""
    if not cpu_bf16_works():
        raise BackendError("a bf16 matrix multiply crashed a test process on this CPU (AMX 'Illegal "
                           "instruction'); use --dtype float32")


def _child_survives(code: str) -> bool:
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
