"""`dinokit export`: ONNX, TorchScript or a torch.export program, checked against eager PyTorch.

Position embeddings are interpolated once, for the export size, and stored in the exported weights: the
graph then needs neither the antialiased nor the `scale_factor` interpolation that exporters reject, and
gives exactly the eager numbers at that size. The batch dimension stays dynamic.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import FORMATS


class ExportableModel(nn.Module):
    """pixel_values → (last_hidden_state, pooler_output), or (logits,) for a classifier, at one image size."""

    def __init__(self, model: nn.Module, image_size: int):
        super().__init__()
        model = copy.deepcopy(model).eval()
        vit = model.dinov2 if hasattr(model, "dinov2") else model
        with torch.no_grad():
            pos = vit.position_embeddings((image_size, image_size)).detach().clone()
        vit.config = vit.config.replace(image_size=image_size)
        vit.pos_embed = nn.Parameter(pos, requires_grad=False)  # the grid now matches: no interpolation
        self.model = model
        self.is_classifier = hasattr(model, "classifier")

    def forward(self, pixel_values: torch.Tensor):
        out = self.model(pixel_values, return_dict=True)
        if self.is_classifier:
            return (out.logits,)
        return out.last_hidden_state, out.pooler_output


def output_names(model: nn.Module) -> list[str]:
    return ["logits"] if hasattr(model, "classifier") else ["last_hidden_state", "pooler_output"]


@dataclass
class ExportReport:
    path: str
    format: str
    image_size: int
    max_abs_diff: float  # against eager PyTorch, on a batch size other than the traced one


def export_model(model: nn.Module, fmt: str, output, image_size: int = 224, opset: int = 18) -> ExportReport:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    wrapper = ExportableModel(model, image_size).eval()
    example = torch.randn(2, 3, image_size, image_size)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = output_names(model)
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(wrapper, example), str(out))
        elif fmt == "exported-program":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(wrapper, (example,), dynamic_shapes={"pixel_values": {0: batch}})
            torch.export.save(program, str(out))
        else:
            torch.onnx.export(
                wrapper, (example,), str(out), input_names=["pixel_values"], output_names=names,
                dynamic_axes={"pixel_values": {0: "batch"}, **{n: {0: "batch"} for n in names}},
                opset_version=opset, dynamo=False,
            )
    return ExportReport(str(out), fmt, image_size, verify_export(wrapper, fmt, out, image_size))


def run_exported(fmt: str, path, pixel_values: torch.Tensor) -> list[np.ndarray]:
    """Outputs of an exported file (ONNX through onnxruntime)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"pixel_values": pixel_values.numpy()})
    loaded = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    with torch.no_grad():
        return [t.numpy() for t in loaded(pixel_values)]


def verify_export(wrapper: nn.Module, fmt: str, path, image_size: int) -> float:
    x = torch.randn(3, 3, image_size, image_size)  # another batch size than the example: batch is dynamic
    with torch.no_grad():
        expected = [t.numpy() for t in wrapper(x)]
    got = run_exported(fmt, path, x)
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
