"""`dinokit bench` / `python -m dinokit.bench`: dinokit against the peers, in one run, on the same weights.

Peers: transformers `Dinov2Model` (SDPA), timm, and the official code (the `dinov2` package), when installed;
with `--dinov3`, transformers' `DINOv3ViTModel` and timm's DINOv3 ViTs.
Each peer is timed against dinokit in that peer's own interpolation mode (they differ by design at 224 px),
interleaved (one call of each in turn), after warm-up; images/s as median, min and max of the timed runs.
Achieved GFLOP/s are compared with the machine's measured fp32 matrix-multiply rate, and every output's max
abs difference from the official output is reported. Speed claims live here, never in unit tests.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .data.processor import CONFIG_NAME as PROCESSOR_CONFIG_NAME
from .models.config import preset_config
from .pretrained import Dinov2Model
from .runtime.cpu import fast_path
from .weights.formats import to_timm

PEER_MODE = {"dinokit": "official", "transformers": "hf", "timm": "timm", "official": "official"}


def vit_flops(config, batch: int, image_size: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the plain-MLP ViT: projections, MLP, attention, patch embedding."""
    d, layers, p = config.hidden_size, config.num_hidden_layers, config.patch_size
    patches = (image_size // p) ** 2
    n = patches + 1 + config.num_register_tokens
    per_layer = n * (4 * d * d + 2 * d * config.mlp_hidden_size) + 2 * n * n * d
    return 2.0 * batch * (layers * per_layer + patches * 3 * p * p * d)


def matmul_peak_gflops(size: int | None = None, repeats: int = 10, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> float:
    """The machine's matrix-multiply rate: best of `repeats` square products (2048² on CPU, 8192² on GPU)."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    times, _ = time_interleaved({"matmul": lambda x: x @ b}, a, warmup=3, repeats=repeats)
    return 2 * size**3 / min(times["matmul"]) / 1e9


def _random_model(size: str, seed: int = 0) -> Dinov2Model:
    torch.manual_seed(seed)
    model = Dinov2Model(preset_config(size))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def build_peers(size: str, workdir: Path) -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """{peer: (peer model, dinokit model in the peer's mode)} with the same weights."""
    ours = fast_path(_random_model(size))  # dinokit's models run as its jobs run them
    sd = ours.state_dict()
    pairs = {"dinokit": (ours, ours)}

    def ours_in(mode):
        m = Dinov2Model(ours.config.replace(interpolate_mode=mode))
        m.load_state_dict(sd)
        return fast_path(m.eval())

    try:
        import transformers

        folder = workdir / f"hf-{size}"
        ours.save_pretrained(folder)
        hf = transformers.Dinov2Model.from_pretrained(folder, attn_implementation="sdpa").eval()
        pairs["transformers"] = (hf, ours_in("hf"))
    except ImportError:
        pass
    try:
        import timm

        word = {"s": "small", "b": "base", "l": "large", "g": "giant"}[size]
        tm = timm.create_model(f"vit_{word}_patch14_dinov2", pretrained=False, dynamic_img_size=True, num_classes=0)
        tm.load_state_dict(to_timm(sd))
        pairs["timm"] = (tm.eval(), ours_in("timm"))
    except ImportError:
        pass
    try:
        os.environ.setdefault("XFORMERS_DISABLED", "1")
        from dinov2.models import vision_transformer as official

        make = {"s": official.vit_small, "b": official.vit_base, "l": official.vit_large, "g": official.vit_giant2}[size]
        om = make(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
        om.load_state_dict(sd)
        pairs["official"] = (om.eval(), ours)
    except ImportError:
        pass
    return pairs


DINOV3_TIMM = {"s": "vit_small_patch16_dinov3_qkvb", "b": "vit_base_patch16_dinov3_qkvb"}


def build_dinov3_peers(size: str, workdir: Path) -> dict[str, torch.nn.Module]:
    """{peer: its model} for a random DINOv3 ViT (`s` or `b`), dinokit's included, the same weights everywhere."""
    from .models.dinov3 import dinov3_vit_config
    from .pretrained import DINOv3ViTModel
    from .weights.dinov3_formats import vit_to_timm

    torch.manual_seed(0)
    ours = DINOv3ViTModel(dinov3_vit_config(size))
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ours = fast_path(ours.eval())
    models = {"dinokit": ours}
    try:
        import transformers

        ours.save_pretrained(workdir / f"dinov3-{size}")
        hf = transformers.DINOv3ViTModel.from_pretrained(workdir / f"dinov3-{size}", attn_implementation="sdpa")
        models["transformers"] = hf.eval()
    except ImportError:
        pass
    try:
        import timm

        tm = timm.create_model(DINOV3_TIMM[size], pretrained=False, num_classes=0)
        tm.load_state_dict(vit_to_timm(ours.state_dict()))
        models["timm"] = tm.eval()
    except ImportError:
        pass
    return models


def bench_dinov3(sizes=("s", "b"), image_size: int = 224, batch_sizes=(1, 8, 32), repeats: int = 10, warmup: int = 2,
                 device: str = "cpu", dtype: torch.dtype = torch.float32, progress=print) -> dict:
    """DINOv3 ViT-S/16 and B/16: dinokit against transformers' `DINOv3ViTModel` (SDPA) and timm's eva, interleaved,
    on the same weights; every output's max abs difference from dinokit's."""
    device = torch.device(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            models = {peer: model.to(device, dtype) for peer, model in build_dinov3_peers(size, Path(tmp)).items()}
            for batch in batch_sizes:
                torch.manual_seed(1)
                x = torch.randn(batch, 3, image_size, image_size).to(device, dtype)
                timers = {peer: functools.partial(_forward, "timm" if peer == "timm" else "dinokit", model)
                          for peer, model in models.items()}
                times, outputs = time_interleaved(timers, x, warmup, repeats)
                for peer in models:
                    if peer == "dinokit":
                        continue
                    row = {"model": f"DINOv3 ViT-{size.upper()}/16", "image_size": image_size, "batch": batch, "peer": peer,
                           "peer_img_s": _img_s(batch, times[peer]), "dinokit_img_s": _img_s(batch, times["dinokit"]),
                           "speedup": statistics.median(times[peer]) / statistics.median(times["dinokit"]),
                           "max_abs_diff_vs_peer": (outputs[peer] - outputs["dinokit"]).float().abs().max().item()}
                    rows.append(row)
                    if progress:
                        progress(f"{row['model']:17s} {image_size}px b{batch:<3d} {peer:12s} peer "
                                 f"{row['peer_img_s']['median']:7.2f} img/s  dinokit {row['dinokit_img_s']['median']:7.2f} "
                                 f"img/s  x{row['speedup']:.2f}  max|Δ| {row['max_abs_diff_vs_peer']:.1e}")
    return {"machine": machine_info(), "device": str(device), "dtype": str(dtype).replace("torch.", ""), "rows": rows}


def dinov3_table(result: dict) -> str:
    lines = ["| model | batch | peer | peer img/s | dinokit img/s | speed-up | max abs diff |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['batch']} | {r['peer']} | {r['peer_img_s']['median']:.2f} | "
                     f"{r['dinokit_img_s']['median']:.2f} | {r['speedup']:.2f} | {r['max_abs_diff_vs_peer']:.1e} |")
    return "\n".join(lines)


def _save_random_vits(folder) -> str:
    """A random ViT-S/14 with the reference processor's config, saved as a Hugging Face folder."""
    _random_model("s").save_pretrained(folder)
    Path(folder, PROCESSOR_CONFIG_NAME).write_text(json.dumps({
        "image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256},
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_resize": True,
        "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True}))
    return str(folder)


def _forward(name: str, model, x):
    if name == "transformers":
        return model(pixel_values=x).last_hidden_state
    if name == "timm":
        return model.forward_features(x)
    if name == "official":
        out = model.forward_features(x)
        return torch.cat([out["x_norm_clstoken"][:, None], out["x_norm_patchtokens"]], dim=1)
    return model(x).last_hidden_state


def time_interleaved(calls: dict, x: torch.Tensor, warmup: int, repeats: int) -> tuple[dict, dict]:
    """Seconds of every timed call, one call of each in turn (so that the machine's drift hits all alike),
    and each call's last output."""
    times, outputs = {key: [] for key in calls}, {}
    for r in range(warmup + repeats):
        for key, call in calls.items():
            _sync(x.device)
            t = time.perf_counter()
            with torch.inference_mode():
                out = call(x)
            _sync(x.device)
            if r >= warmup:
                times[key].append(time.perf_counter() - t)
            outputs[key] = out
    return times, outputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _img_s(batch: int, seconds: list[float]) -> dict:
    return {"median": batch / statistics.median(seconds), "min": batch / max(seconds), "max": batch / min(seconds)}


def bench_models(sizes=("s", "b"), image_sizes=(224,), batch_sizes=(1, 8, 32), repeats: int = 10, warmup: int = 2,
                 threads: int | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 progress=print) -> dict:
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device)
    peak = matmul_peak_gflops(device=device, dtype=dtype)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            pairs = {peer: (theirs.to(device, dtype), ours.to(device, dtype))
                     for peer, (theirs, ours) in build_peers(size, Path(tmp)).items()}
            config = pairs["dinokit"][0].config
            for image_size in image_sizes:
                for batch in batch_sizes:
                    torch.manual_seed(1)
                    x = torch.randn(batch, 3, image_size, image_size).to(device, dtype)
                    with torch.inference_mode():
                        reference = _forward("official", pairs["official"][0], x) if "official" in pairs else None
                    timers = {}
                    for peer, (theirs, ours) in pairs.items():
                        timers[(peer, "peer")] = functools.partial(_forward, peer, theirs)
                        if peer not in ("dinokit", "official"):  # dinokit's official mode is the "dinokit" row
                            timers[(peer, "dinokit")] = functools.partial(_forward, "dinokit", ours)
                    times, outputs = time_interleaved(timers, x, warmup, repeats)
                    flops = vit_flops(config, batch, image_size)
                    for peer in pairs:
                        t_peer = times[(peer, "peer")]
                        t_ours = times[(peer, "dinokit")] if (peer, "dinokit") in times else times[("dinokit", "peer")]
                        row = {
                            "model": f"ViT-{size.upper()}/14", "image_size": image_size, "batch": batch, "peer": peer,
                            "mode": PEER_MODE[peer],
                            "peer_img_s": _img_s(batch, t_peer), "dinokit_img_s": _img_s(batch, t_ours),
                            "peer_gflops": flops / statistics.median(t_peer) / 1e9,
                            "dinokit_gflops": flops / statistics.median(t_ours) / 1e9,
                            "speedup": statistics.median(t_peer) / statistics.median(t_ours),
                            "max_abs_diff_vs_official": None if reference is None else
                            (outputs[(peer, "peer")] - reference).float().abs().max().item(),
                            "max_abs_diff_vs_peer": None if peer == "dinokit" else
                            (outputs[(peer, "peer")] - outputs.get((peer, "dinokit"), outputs[("dinokit", "peer")])
                             ).float().abs().max().item(),
                        }
                        rows.append(row)
                        if progress:
                            progress(format_row(row, peak))
    return {"machine": machine_info(), "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "matmul_peak_gflops": peak, "repeats": repeats, "rows": rows}


def bench_backends(backends, sizes=("s",), batch_sizes=(1, 8, 32), image_size: int = 224, repeats: int = 10,
                   warmup: int = 2, device: str = "cpu", dtype: torch.dtype = torch.float32, photos=None,
                   photos_limit: int | None = 100, knn: bool = True, progress=print) -> dict:
    """The opt-in backends against dinokit's default (eager, in `dtype`): speed-up, and what they do to the numbers.

    Effects are measured against eager float32 on real photos (cosine similarity of the CLS and patch tokens)
    and, for the first model, as the change in k-NN top-1 accuracy on scikit-learn's digits (when installed).
    """
    from .runtime.backends import accelerate

    device = torch.device(device)
    rows, effects = [], []
    pixels = _photo_pixels(photos, image_size, photos_limit) if photos else None
    digits = _digits() if knn else None
    for n, size in enumerate(sizes):
        name = f"ViT-{size.upper()}/14"
        reference_model = _random_model(size).to(device)
        reference = accelerate(reference_model, "eager")
        model = reference_model if dtype == torch.float32 else copy.deepcopy(reference_model).to(dtype)
        runners = {"eager": accelerate(model, "eager")}
        runners.update({b: accelerate(model, b, image_size=image_size) for b in backends if b != "eager"})
        for batch in batch_sizes:
            torch.manual_seed(1)
            x = torch.randn(batch, 3, image_size, image_size, device=device, dtype=dtype)
            times, outputs = time_interleaved(runners, x, warmup, repeats)
            eager = statistics.median(times["eager"])
            for backend in runners:
                row = {"model": name, "image_size": image_size, "batch": batch, "backend": backend,
                       "img_s": _img_s(batch, times[backend]), "speedup": eager / statistics.median(times[backend]),
                       "max_abs_diff_vs_eager": (outputs[backend] - outputs["eager"]).float().abs().max().item()}
                rows.append(row)
                if progress:
                    progress(f"{name:9s} {image_size}px b{batch:<3d} {backend:17s} {row['img_s']['median']:7.2f} "
                             f"img/s  x{row['speedup']:.2f} vs eager  max|Δ| {row['max_abs_diff_vs_eager']:.1e}")
        with_knn = digits is not None and n == 0
        fp32_tokens = _batched(reference, pixels.to(device)) if pixels is not None else None  # once per model
        fp32_top1 = _knn_top1(reference, digits, device, torch.float32) if with_knn else None
        for backend, run in runners.items():
            if backend == "eager" and dtype == torch.float32:
                continue
            effect = {"model": name, "backend": backend, "dtype": str(dtype).replace("torch.", "")}
            if pixels is not None:
                effect.update(_cosines(fp32_tokens, _batched(run, pixels.to(device), dtype)))
            if with_knn:
                top1 = _knn_top1(run, digits, device, dtype)
                effect.update(knn_top1_fp32=fp32_top1, knn_top1_backend=top1, knn_top1_change=top1 - fp32_top1)
            effects.append(effect)
            if progress:
                progress(f"{name:9s} {backend:17s} " + "  ".join(
                    f"{k} {v:.4f}" for k, v in effect.items() if isinstance(v, float)))
    return {"machine": machine_info(), "device": str(device), "dtype": str(dtype).replace("torch.", ""), "rows": rows,
            "effects": effects}


def _photo_pixels(folder, image_size: int, limit: int | None = None) -> torch.Tensor:
    from .data import Dinov2ImageProcessor, list_images, load_image

    processor = Dinov2ImageProcessor(size=image_size * 256 // 224, crop_size=image_size)
    return torch.cat([processor(load_image(p)).pixel_values for p in list_images(folder)[:limit]])


def _batched(run, pixels: torch.Tensor, dtype: torch.dtype = torch.float32, batch: int = 8) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([run(part.to(dtype)).float().cpu() for part in pixels.split(batch)])


def _cosines(a: torch.Tensor, b: torch.Tensor) -> dict:
    """CLS and patch-token cosine similarities of two [images, tokens, dim] outputs."""
    cls = torch.nn.functional.cosine_similarity(a[:, 0], b[:, 0], dim=-1)
    patches = torch.nn.functional.cosine_similarity(a[:, 1:], b[:, 1:], dim=-1)
    return {"photos": len(a), "cls_cosine_min": cls.min().item(), "cls_cosine_mean": cls.mean().item(),
            "patch_cosine_mean": patches.mean().item()}


def _digits(per_class: tuple[int, int] = (20, 10), image_size: int = 224):
    """scikit-learn's 8×8 digits resized to the model's input: (train pixels, labels, val pixels, labels)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    from .data import Dinov2ImageProcessor

    data = load_digits()
    processor = Dinov2ImageProcessor(size=image_size, crop_size=image_size)
    splits = {"train": ([], []), "val": ([], [])}
    seen: dict = {}
    for image, label in zip(data.images, data.target):
        seen[label] = seen.get(label, 0) + 1
        split = "train" if seen[label] <= per_class[0] else "val" if seen[label] <= sum(per_class) else None
        if split:
            rgb = np.repeat((image / 16 * 255).astype(np.uint8)[..., None], 3, axis=-1)
            splits[split][0].append(processor(rgb).pixel_values)
            splits[split][1].append(int(label))
    return tuple(x for name in ("train", "val") for x in (torch.cat(splits[name][0]), torch.tensor(splits[name][1])))


def _knn_top1(run, digits, device, dtype) -> float:
    from .eval.knn import knn_eval

    train, train_labels, val, val_labels = digits
    features = [_batched(run, p.to(device), dtype)[:, 0] for p in (train, val)]
    return float(knn_eval(features[0], train_labels, features[1], val_labels, 10, ks=(10,))[0]["top1"])


def machine_info() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def format_row(row: dict, peak: float) -> str:
    diff = row["max_abs_diff_vs_official"]
    return (f"{row['model']:9s} {row['image_size']:4d}px b{row['batch']:<3d} {row['peer']:12s} ({row['mode']:8s}) "
            f"peer {row['peer_img_s']['median']:7.2f} img/s  dinokit {row['dinokit_img_s']['median']:7.2f} img/s  "
            f"x{row['speedup']:.2f}  dinokit {row['dinokit_gflops']:5.0f} GFLOP/s = {100 * row['dinokit_gflops'] / peak:3.0f}% "
            f"of peak  Δofficial {'-' if diff is None else f'{diff:.1e}'}")


def markdown_table(result: dict) -> str:
    """The benchmark as a Markdown table (docs/performance.md)."""
    peak = result["matmul_peak_gflops"]
    lines = ["| model | px | batch | peer (mode) | peer img/s (min–max) | dinokit img/s (min–max) | speed-up | "
             "dinokit GFLOP/s (% of peak) | Δ official |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["peer"] == "dinokit":
            continue
        p, d = r["peer_img_s"], r["dinokit_img_s"]
        diff = r["max_abs_diff_vs_official"]
        lines.append(
            f"| {r['model']} | {r['image_size']} | {r['batch']} | {r['peer']} ({r['mode']}) | "
            f"{p['median']:.2f} ({p['min']:.2f}–{p['max']:.2f}) | {d['median']:.2f} ({d['min']:.2f}–{d['max']:.2f}) | "
            f"×{r['speedup']:.2f} | {r['dinokit_gflops']:.0f} ({100 * r['dinokit_gflops'] / peak:.0f}%) | "
            f"{'–' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def bench_embed(folder, model_dir, batch_size: int = 32, limit: int | None = None, backend: str = "eager",
                device: str = "cpu", repeats: int = 3) -> dict:
    """`dinokit embed` against a plain transformers loop (AutoImageProcessor + AutoModel, batch 32), in turn
    `repeats` times (the machine's drift hits both alike), after one untimed run of each on a few images
    (imports, a warm disk cache); images/s are medians. dinokit runs in transformers' interpolation mode,
    so that the two sides' embeddings can be compared."""
    from .data import list_images
    from .features import embed, read_embeddings

    paths = [str(p) for p in list_images(folder)][:limit]
    for p in paths:
        Path(p).read_bytes()

    def dinokit_embed(paths) -> tuple[float, np.ndarray]:
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "list.txt"
            listing.write_text("\n".join(paths))
            summary = embed([listing], Path(tmp) / "out", str(model_dir), backend=backend, device=device,
                            interpolate_mode="hf", progress=False)
            done, emb, _ = read_embeddings(Path(tmp) / "out")
            row = {path: i for i, path in enumerate(done)}  # embed stores resolved paths, in its own order
            return summary.seconds, emb[[row[str(Path(p).resolve())] for p in paths]]

    _transformers_loop(paths[:8], model_dir, batch_size, device), dinokit_embed(paths[:8])
    times: dict[str, list[float]] = {"transformers": [], "dinokit": []}
    for _ in range(repeats):
        seconds, theirs = _transformers_loop(paths, model_dir, batch_size, device)
        times["transformers"].append(seconds)
        seconds, ours = dinokit_embed(paths)
        times["dinokit"].append(seconds)
    hf, dk = (_img_s(len(paths), times[k]) for k in ("transformers", "dinokit"))
    return {"images": len(paths), "backend": backend, "repeats": repeats, "seconds": times,
            "transformers_loop_img_s": hf["median"], "dinokit_embed_img_s": dk["median"],
            "speedup": dk["median"] / hf["median"], "max_abs_diff": float(np.abs(ours - theirs).max())}


def _transformers_loop(paths, model_dir, batch_size: int, device) -> tuple[float, np.ndarray]:
    """What a transformers user writes: seconds (loading the model included, as a user's run does) and the
    CLS embeddings (`pooler_output`) in the order of `paths`."""
    import transformers
    from PIL import Image

    t = time.perf_counter()
    processor = transformers.AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    hf = transformers.AutoModel.from_pretrained(model_dir).eval().to(device)
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[i:i + batch_size]]
            out.append(hf(**processor(images=images, return_tensors="pt").to(device)).pooler_output.cpu())
    return time.perf_counter() - t, torch.cat(out).float().numpy()


def backends_table(result: dict) -> str:
    """The backends as Markdown: speed-up over eager fp32, and the effect on the numbers."""
    lines = ["| model | px | batch | backend | img/s (min–max) | speed-up vs eager | max abs Δ |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["backend"] == "eager":
            continue
        i = r["img_s"]
        lines.append(f"| {r['model']} | {r['image_size']} | {r['batch']} | {r['backend']} | {i['median']:.2f} "
                     f"({i['min']:.2f}–{i['max']:.2f}) | ×{r['speedup']:.2f} | {r['max_abs_diff_vs_eager']:.1e} |")
    lines += ["", "| model | backend (dtype) | CLS cosine min / mean | patch cosine mean | k-NN top-1 fp32 → backend |",
              "|---|---|---|---|---|"]
    for e in result["effects"]:
        cos = (f"{e['cls_cosine_min']:.5f} / {e['cls_cosine_mean']:.5f} | {e['patch_cosine_mean']:.5f}"
               if "cls_cosine_min" in e else "– | –")
        knn = (f"{100 * e['knn_top1_fp32']:.1f}% → {100 * e['knn_top1_backend']:.1f}%" if "knn_top1_fp32" in e else "–")
        lines.append(f"| {e['model']} | {e['backend']} ({e['dtype']}) | {cos} | {knn} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from .runtime.backends import BACKENDS

    parser = argparse.ArgumentParser(prog="dinokit bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["s", "b"], choices=["s", "b", "l", "g"])
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="the peers' and dinokit's dtype (reduced precision: GPU)")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer comparison")
    parser.add_argument("--dinov3", action="store_true",
                        help="also time DINOv3 ViT-S/16 and B/16 against transformers' DINOv3ViTModel and timm")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS,
                        help="also time these opt-in backends against eager fp32, with their effect on the numbers")
    parser.add_argument("--no-knn", action="store_true", help="skip the backends' k-NN measurement on digits")
    parser.add_argument("--photos", help="folder of photos for the backends' cosine similarities (default: the "
                                         "--embed-folder)")
    parser.add_argument("--photos-limit", type=int, default=100, help="use at most this many photos (100)")
    parser.add_argument("--embed-folder", help="also time `dinokit embed` on this folder against a transformers loop")
    parser.add_argument("--embed-limit", type=int)
    parser.add_argument("--embed-repeats", type=int, default=3, help="runs of each side, in turn (3)")
    parser.add_argument("--embed-backend", default="eager", choices=BACKENDS, help="the backend `embed` uses")
    parser.add_argument("--serve", action="store_true",
                        help="also time `dinokit serve` (ViT-S/14): dynamic batching against one request per forward")
    parser.add_argument("--serve-clients", type=int, default=32, help="concurrent clients of --serve (32)")
    parser.add_argument("--serve-requests", type=int, default=256, help="timed requests per server of --serve (256)")
    parser.add_argument("--serve-model", help="the model --serve uses (default: a random ViT-S/14)")
    parser.add_argument("-o", "--output", default="bench.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if torch.device(args.device).type == "cpu" and dtype == torch.bfloat16:
        from .runtime.backends import BackendError, require_cpu_bf16

        try:
            require_cpu_bf16()
        except BackendError as e:
            parser.error(str(e))
    result: dict = {"machine": machine_info(), "command": "python -m dinokit bench " + " ".join(argv or sys.argv[1:])}
    if not args.no_peers:
        result.update(bench_models(args.models, args.image_sizes, args.batch_sizes, args.repeats, device=args.device,
                                   dtype=dtype))
        print(f"machine: {result['machine']}; {args.dtype} matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s")
    if args.dinov3:
        result["dinov3"] = bench_dinov3([m for m in args.models if m in DINOV3_TIMM] or ["s", "b"], args.image_sizes[0],
                                        args.batch_sizes, args.repeats, device=args.device, dtype=dtype)
        print(dinov3_table(result["dinov3"]))
    if args.backends:
        result["backends"] = bench_backends(args.backends, args.models, args.batch_sizes, args.image_sizes[0],
                                            args.repeats, device=args.device, dtype=dtype,
                                            photos=args.photos or args.embed_folder,
                                            photos_limit=args.photos_limit, knn=not args.no_knn)
    if args.embed_folder:
        with tempfile.TemporaryDirectory() as tmp:
            _save_random_vits(tmp)
            result["embed"] = bench_embed(args.embed_folder, tmp, limit=args.embed_limit, backend=args.embed_backend,
                                          device=args.device, repeats=args.embed_repeats)
        e = result["embed"]
        print(f"embed ViT-S/14 ({e['backend']}), {e['images']} images, median of {e['repeats']}: transformers loop "
              f"{e['transformers_loop_img_s']:.1f} img/s, dinokit embed {e['dinokit_embed_img_s']:.1f} img/s "
              f"(x{e['speedup']:.2f}); max abs difference of the embeddings {e['max_abs_diff']:.1e}")
    if args.serve:
        from .serve.bench import bench_serve, serve_table

        with tempfile.TemporaryDirectory() as tmp:
            photos = args.photos or args.embed_folder
            if photos is None:
                from .data.sample_photos import write_samples

                write_samples(photos := Path(tmp, "photos"))
            result["serve"] = bench_serve(args.serve_model or _save_random_vits(Path(tmp, "model")), photos,
                                          clients=args.serve_clients, requests=args.serve_requests)
        print(serve_table(result["serve"]))
    if "rows" in result:
        print(markdown_table(result))
    if "backends" in result:
        print(backends_table(result["backends"]))
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
