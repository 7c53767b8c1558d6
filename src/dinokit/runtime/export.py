"""`dinokit export`: ONNX, TorchScript or a torch.export program, checked against eager PyTorch.

Position embeddings (DINOv2) are interpolated once, for the export size, and stored in the exported weights:
the graph then needs neither the antialiased nor the `scale_factor` interpolation that exporters reject, and
gives exactly the eager numbers at that size. DINOv3's RoPE is computed in the graph for that size (its
sines and cosines fold to constants); a ConvNeXt needs nothing. The batch dimension stays dynamic.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..models.dinotxt import DinoTxt
from ..models.vit import DinoVisionTransformer
from . import FORMATS


class ExportableModel(nn.Module):
    """pixel_values → (last_hidden_state, pooler_output), (logits,) for a classifier, or dino.txt's
    (image_embedding, patch_tokens), at one image size."""

    def __init__(self, model: nn.Module, image_size: int):
        super().__init__()
        model = copy.deepcopy(model).eval()
        vit = next((m for m in model.modules() if isinstance(m, DinoVisionTransformer)), None)
        if vit is not None:
            with torch.no_grad():
                pos = vit.position_embeddings((image_size, image_size)).detach().clone()
            vit.config = vit.config.replace(image_size=image_size)
            vit.pos_embed = nn.Parameter(pos, requires_grad=False)  # the grid now matches: no interpolation
        self.model = model

    def forward(self, pixel_values: torch.Tensor):
        if isinstance(self.model, DinoTxt):
            cls, patches = self.model.get_visual_class_and_patch_tokens(pixel_values)
            return torch.cat([cls, patches.mean(dim=1)], dim=-1), patches
        out = self.model(pixel_values, return_dict=True)
        if hasattr(self.model, "classifier"):
            return (out.logits,)
        return out.last_hidden_state, out.pooler_output


class ExportableText(nn.Module):
    """dino.txt's text tower: token ids [batch, 77] → (text_embedding,)."""

    def __init__(self, model: DinoTxt):
        super().__init__()
        self.text = copy.deepcopy(model.text).eval()

    def forward(self, input_ids: torch.Tensor):
        return (self.text(input_ids),)


def output_names(model: nn.Module) -> list[str]:
    if isinstance(model, DinoTxt):
        return ["image_embedding", "patch_tokens"]
    return ["logits"] if hasattr(model, "classifier") else ["last_hidden_state", "pooler_output"]


@dataclass
class ExportReport:
    path: str
    format: str
    image_size: int
    max_abs_diff: float  # against eager PyTorch, on a batch size other than the traced one


def export_model(model: nn.Module, fmt: str, output, image_size: int = 224, opset: int = 18) -> ExportReport:
    wrapper = ExportableModel(model, image_size).eval()
    example, check = torch.randn(2, 3, image_size, image_size), torch.randn(3, 3, image_size, image_size)
    return _export(wrapper, "pixel_values", example, check, output_names(model), fmt, output, image_size, opset)


def export_dinotxt(model: DinoTxt, fmt: str, output, image_size: int = 224, opset: int = 18) -> list[ExportReport]:
    """Two files, each checked against eager PyTorch: OUTPUT's stem + `.vision` (pixels → image embedding and
    patch tokens) and + `.text` (token ids → text embedding)."""
    out = Path(output)
    vision = export_model(model, fmt, out.with_name(f"{out.stem}.vision{out.suffix}"), image_size, opset)
    context, vocab = model.config.text_context_length, model.config.text_vocab_size
    example, check = torch.randint(0, vocab, (2, context)), torch.randint(0, vocab, (3, context))
    check[:, 5] = vocab - 1  # the pooled position differs per row and from the example's
    text = _export(ExportableText(model), "input_ids", example, check, ["text_embedding"], fmt,
                   out.with_name(f"{out.stem}.text{out.suffix}"), image_size, opset)
    return [vision, text]


def _export(wrapper: nn.Module, input_name: str, example: torch.Tensor, check: torch.Tensor, names: list[str], fmt: str,
            output, image_size: int, opset: int) -> ExportReport:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(wrapper, example), str(out))
        elif fmt == "exported-program":
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(wrapper, (example,), dynamic_shapes={input_name: {0: batch}})
            torch.export.save(program, str(out))
        else:
            torch.onnx.export(
                wrapper, (example,), str(out), input_names=[input_name], output_names=names,
                dynamic_axes={input_name: {0: "batch"}, **{n: {0: "batch"} for n in names}},
                opset_version=opset, dynamo=False,
            )
    with torch.no_grad():  # another batch size than the example: batch is dynamic
        expected = [t.numpy() for t in wrapper(check)]
    got = run_exported(fmt, out, check, input_name)
    return ExportReport(str(out), fmt, image_size, max(float(np.abs(a - b).max()) for a, b in zip(expected, got)))


def run_exported(fmt: str, path, inputs: torch.Tensor, input_name: str = "pixel_values") -> list[np.ndarray]:
    """Outputs of an exported file (ONNX through onnxruntime)."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {input_name: inputs.numpy()})
    loaded = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    with torch.no_grad():
        return [t.numpy() for t in loaded(inputs)]
