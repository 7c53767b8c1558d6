"""dino.txt's two released files ⇄ dinokit's `DinoTxt` state dict, and the config their shapes imply.

`..._vision_head.pth` is the official `VisionHead.state_dict()` (`block_list.N.*`, `ln_final.*`);
`..._text_encoder.pth` is the official `TextTower.state_dict()` (`backbone.*` of the causal transformer,
`head.linear_projection.weight`). The backbone is the ordinary ViT-L/14 reg4 checkpoint.
DINOv3's dino.txt keeps both in one file, `DINOTxt.state_dict()` without its backbone:
`visual_model.head.blocks.N.*`, `visual_model.head.ln_final.*`, `text_model.*` (the same text tower); its
backbone is the ordinary DINOv3 ViT-L/16 checkpoint.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .checkpoint import CheckpointMismatchError
from .download import url_files
from .names import DINOTXT_NAMES, DINOV3_DINOTXT_NAME, dinotxt_urls

_TEXT_BLOCK = {"attention_norm": "norm1", "attention": "attn", "ffn_norm": "norm2", "feed_forward": "mlp"}


def vision_head_to_dinokit(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^block_list\.(\d+)\.", r"vision_head.blocks.\1.", k)
        out[re.sub(r"^ln_final\.", "vision_head.norm.", k)] = v
    return out


def text_encoder_to_dinokit(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k == "head.linear_projection.weight":
            out["text.projection.weight"] = v
            continue
        k = re.sub(r"^backbone\.ln_final\.", "text.norm.", k)
        m = re.match(r"^backbone\.blocks\.(\d+)\.(\w+)\.(.*)$", k)
        if m and m[2] in _TEXT_BLOCK:
            k = f"text.blocks.{m[1]}.{_TEXT_BLOCK[m[2]]}.{m[3]}"
        out[k.replace("backbone.", "text.", 1) if k.startswith("backbone.") else k] = v
    return out


def dinokit_to_official(sd: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(vision head, text encoder) state dicts in the official files' layout: the inverse of the two above."""
    head, text = {}, {}
    inverse = {v: k for k, v in _TEXT_BLOCK.items()}
    for k, v in sd.items():
        if k.startswith("vision_head."):
            k = re.sub(r"^vision_head\.blocks\.(\d+)\.", r"block_list.\1.", k)
            head[re.sub(r"^vision_head\.norm\.", "ln_final.", k)] = v
        elif k == "text.projection.weight":
            text["head.linear_projection.weight"] = v
        elif k.startswith("text."):
            m = re.match(r"^text\.blocks\.(\d+)\.(\w+)\.(.*)$", k)
            if m:
                k = f"backbone.blocks.{m[1]}.{inverse[m[2]]}.{m[3]}"
            else:
                k = "backbone." + k.removeprefix("text.").replace("norm.", "ln_final.", 1)
            text[k] = v
    return head, text


def split_head_and_text(sd: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """DINOv3's one file → (vision head, text encoder) in the layout of DINOv2's two files."""
    head, text = {}, {}
    for k, v in sd.items():
        if k.startswith("visual_model.head."):
            head[re.sub(r"^blocks\.", "block_list.", k.removeprefix("visual_model.head."))] = v
        elif k.startswith("text_model.") or k == "logit_scale":
            text[k.removeprefix("text_model.")] = v
    return head, text


def join_head_and_text(head: dict[str, torch.Tensor], text: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse: DINOv2-layout vision head and text encoder → DINOv3's one file."""
    out = {"visual_model.head." + re.sub(r"^block_list\.", "blocks.", k): v for k, v in head.items()}
    out.update({k if k == "logit_scale" else "text_model." + k: v for k, v in text.items()})
    return out


def config_from_shapes(text_sd: dict[str, torch.Tensor], head_sd: dict[str, torch.Tensor]) -> dict:
    """The DinoTxtConfig fields the files' shapes fix (head counts are not in the shapes: they come from the
    config, the released model's by default)."""
    try:
        vocab, width = text_sd["backbone.token_embedding.weight"].shape
        context = text_sd["backbone.positional_embedding"].shape[0]
        embed_dim = text_sd["head.linear_projection.weight"].shape[0]
        layers = 1 + max(int(m[1]) for k in text_sd if (m := re.match(r"backbone\.blocks\.(\d+)\.", k)))
        ffn = text_sd["backbone.blocks.0.feed_forward.fc1.weight"].shape[0]
        head_blocks = 1 + max(int(m[1]) for k in head_sd if (m := re.match(r"block_list\.(\d+)\.", k)))
    except (KeyError, ValueError) as e:
        raise CheckpointMismatchError([str(e)], [], [], source="of dino.txt (text encoder and vision head)") from None
    return {"text_vocab_size": vocab, "text_width": width, "text_context_length": context, "embed_dim": embed_dim,
            "text_layers": layers, "text_ffn_ratio": ffn / width, "vision_head_blocks": head_blocks}


VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
HEAD_AND_TEXT = "_vision_head_and_text_encoder"  # DINOv3's one file for both
CONFIG_FILE = "dinotxt_config.json"  # optional, beside local files: DinoTxtConfig fields the shapes do not fix


def dinotxt_files(name_or_folder, *, local_files_only: bool = False) -> dict[str, Path]:
    """{backbone, vision_head, text_encoder, vocab} → files: a published name through the torch hub cache
    (downloaded once; offline, every missing file is named with its URL and cache path), or a folder holding
    the official files (`*_vision_head.pth`, `*_text_encoder.pth`, the vocabulary, one backbone checkpoint)."""
    if str(name_or_folder) in DINOTXT_NAMES:
        name = DINOTXT_NAMES[0] if str(name_or_folder) == "dinotxt" else str(name_or_folder)
        urls = dinotxt_urls(name)
        return dict(zip(urls, url_files(list(urls.values()), local_files_only=local_files_only,
                                        gated=name == DINOV3_DINOTXT_NAME)))
    folder = Path(name_or_folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a dino.txt name ({', '.join(DINOTXT_NAMES)}) or folder")
    joined = sorted(folder.glob(f"*{HEAD_AND_TEXT}*.pth"))
    found = {"vocab": [folder / VOCAB_FILE] if (folder / VOCAB_FILE).is_file() else []}
    if joined:  # DINOv3's layout
        found["head_and_text"] = joined
        parts = (("head_and_text", f"*{HEAD_AND_TEXT}*.pth"),)
    else:
        found.update(vision_head=sorted(folder.glob("*_vision_head.pth")), text_encoder=sorted(folder.glob("*_text_encoder.pth")))
        parts = (("vision_head", "*_vision_head.pth"), ("text_encoder", "*_text_encoder.pth"))
    taken = {f for files in found.values() for f in files}
    found["backbone"] = sorted(f for f in folder.iterdir() if f.suffix in (".pth", ".safetensors") and f not in taken)
    missing = [f"{kind} ({pattern})" for kind, pattern in (
        ("backbone", "a ViT checkpoint, e.g. dinov2_vitl14_reg4_pretrain.pth"), *parts, ("vocab", VOCAB_FILE))
        if len(found[kind]) != 1]
    if missing:
        raise FileNotFoundError(f"{folder} is not a dino.txt folder: it needs exactly one of each of "
                                f"{', '.join(missing)}")
    return {kind: files[0] for kind, files in found.items()}


def read_dinotxt(files: dict[str, Path]) -> tuple[dict[str, torch.Tensor], dict]:
    """(dinokit state dict of the whole model, DinoTxtConfig fields from the files' shapes and the optional
    config file; `backbone` is the backbone's Dinov2Config)."""
    from .checkpoint import infer_config, read_checkpoint, read_state_dict

    backbone, _ = read_checkpoint(files["backbone"])
    if "head_and_text" in files:
        head, text = split_head_and_text(read_state_dict(files["head_and_text"]))
    else:
        head, text = read_state_dict(files["vision_head"]), read_state_dict(files["text_encoder"])
    fields = {**config_from_shapes(text, head), "backbone": infer_config(backbone)}
    extra = Path(files["backbone"]).parent / CONFIG_FILE
    if extra.is_file():
        from ..io import read_json

        fields.update({k: v for k, v in read_json(extra).items() if k != "backbone"})
    sd = {**{f"backbone.{k}": v for k, v in backbone.items()}, **vision_head_to_dinokit(head), **text_encoder_to_dinokit(text)}
    return sd, fields
