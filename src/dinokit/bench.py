"""`dinokit bench` / `python -m dinokit.bench`: dinokit against the peers, in one run, on the same weights.

Peers: transformers `Dinov2Model` (SDPA), timm, and the official code (the `dinov2` package), when installed.
Each peer is timed against dinokit in that peer's own interpolation mode (they differ by design at 224 px),
interleaved (one call of each in turn), after warm-up; images/s as median, min and max of the timed runs.
Achieved GFLOP/s are compared with the machine's measured fp32 matrix-multiply rate, and every output's max
abs difference from the official output is reported. Speed claims live here, never in unit tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .models.config import preset_config
from .pretrained import Dinov2Model
from .weights.formats import to_timm

PEER_MODE = {"dinokit": "official", "transformers": "hf", "timm": "timm", "official": "official"}


def vit_flops(config, batch: int, image_size: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the plain-MLP ViT: projections, MLP, attention, patch embedding."""
    d, layers, p = config.hidden_size, config.num_hidden_layers, config.patch_size
    patches = (image_size // p) ** 2
    n = patches + 1 + config.num_register_tokens
    per_layer = n * (4 * d * d + 2 * d * config.mlp_hidden_size) + 2 * n * n * d
    return 2.0 * batch * (layers * per_layer + patches * 3 * p * p * d)


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * size**3 / min(times) / 1e9


def _random_model(size: str, seed: int = 0) -> Dinov2Model:
    torch.manual_seed(seed)
    model = Dinov2Model(preset_config(size))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def build_peers(size: str, workdir: Path) -> dict[str, tuple[torch.nn.Module, torch.nn.Module]]:
    """{peer: (peer model, dinokit model in the peer's mode)} with the same weights."""
    ours = _random_model(size)
    sd = ours.state_dict()
    pairs = {"dinokit": (ours, ours)}

    def ours_in(mode):
        m = Dinov2Model(ours.config.replace(interpolate_mode=mode))
        m.load_state_dict(sd)
        return m.eval()

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


def _forward(name: str, model, x):
    if name == "transformers":
        return model(pixel_values=x).last_hidden_state
    if name == "timm":
        return model.forward_features(x)
    if name == "official":
        out = model.forward_features(x)
        return torch.cat([out["x_norm_clstoken"][:, None], out["x_norm_patchtokens"]], dim=1)
    return model(x).last_hidden_state


def bench_models(sizes=("s", "b"), image_sizes=(224,), batch_sizes=(1, 8, 32), repeats: int = 10, warmup: int = 2,
                 threads: int | None = None, progress=print) -> dict:
    if threads:
        torch.set_num_threads(threads)
    peak = matmul_peak_gflops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            pairs = build_peers(size, Path(tmp))
            config = pairs["dinokit"][0].config
            for image_size in image_sizes:
                for batch in batch_sizes:
                    torch.manual_seed(1)
                    x = torch.randn(batch, 3, image_size, image_size)
                    with torch.inference_mode():
                        reference = _forward("official", pairs["official"][0], x) if "official" in pairs else None
                    timers = {}
                    for peer, (theirs, ours) in pairs.items():
                        timers[(peer, "peer")] = (peer, theirs)
                        if peer not in ("dinokit", "official"):  # dinokit's official mode is the "dinokit" row
                            timers[(peer, "dinokit")] = ("dinokit", ours)
                    times = {key: [] for key in timers}
                    outputs = {}
                    for r in range(warmup + repeats):
                        for key, (kind, model) in timers.items():
                            t = time.perf_counter()
                            with torch.inference_mode():
                                out = _forward(kind, model, x)
                            elapsed = time.perf_counter() - t
                            if r >= warmup:
                                times[key].append(elapsed)
                            outputs[key] = out
                    flops = vit_flops(config, batch, image_size)
                    for peer in pairs:
                        t_peer = times[(peer, "peer")]
                        t_ours = times[(peer, "dinokit")] if (peer, "dinokit") in times else times[("dinokit", "peer")]
                        row = {
                            "model": f"ViT-{size.upper()}/14", "image_size": image_size, "batch": batch, "peer": peer,
                            "mode": PEER_MODE[peer],
                            "peer_img_s": {"median": batch / statistics.median(t_peer), "min": batch / max(t_peer),
                                           "max": batch / min(t_peer)},
                            "dinokit_img_s": {"median": batch / statistics.median(t_ours), "min": batch / max(t_ours),
                                              "max": batch / min(t_ours)},
                            "peer_gflops": flops / statistics.median(t_peer) / 1e9,
                            "dinokit_gflops": flops / statistics.median(t_ours) / 1e9,
                            "speedup": statistics.median(t_peer) / statistics.median(t_ours),
                            "max_abs_diff_vs_official": None if reference is None else
                            (outputs[(peer, "peer")] - reference).abs().max().item(),
                            "max_abs_diff_vs_peer": None if peer == "dinokit" else
                            (outputs[(peer, "peer")] - outputs.get((peer, "dinokit"), outputs[("dinokit", "peer")])
                             ).abs().max().item(),
                        }
                        rows.append(row)
                        if progress:
                            progress(format_row(row, peak))
    return {"machine": machine_info(), "matmul_peak_gflops": peak, "repeats": repeats, "rows": rows}


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


def bench_embed(folder, model_dir, batch_size: int = 32, limit: int | None = None) -> dict:
    """`dinokit embed` against a plain transformers loop (AutoImageProcessor + AutoModel, batch 32)."""
    import transformers

    from .data import list_images
    from .features import embed

    paths = [str(p) for p in list_images(folder)][:limit]
    from PIL import Image

    t = time.perf_counter()  # both sides include loading the model, as a user's run does
    processor = transformers.AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    hf = transformers.AutoModel.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[i:i + batch_size]]
            hf(**processor(images=images, return_tensors="pt")).pooler_output
    hf_time = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("\n".join(paths))
        s = embed([listing], Path(tmp) / "out", str(model_dir), progress=False)
    return {"images": len(paths), "transformers_loop_img_s": len(paths) / hf_time,
            "dinokit_embed_img_s": len(paths) / s.seconds, "speedup": hf_time / s.seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="dinokit bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["s", "b"], choices=["s", "b", "l", "g"])
    parser.add_argument("--image-sizes", nargs="+", type=int, default=[224])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--embed-folder", help="also time `dinokit embed` on this folder against a transformers loop")
    parser.add_argument("--embed-limit", type=int)
    parser.add_argument("-o", "--output", default="bench.json")
    args = parser.parse_args(argv)
    result = bench_models(args.models, args.image_sizes, args.batch_sizes, args.repeats, threads=args.threads)
    print(f"machine: {result['machine']}; fp32 matmul peak {result['matmul_peak_gflops']:.0f} GFLOP/s")
    if args.embed_folder:
        with tempfile.TemporaryDirectory() as tmp:
            _random_model("s").save_pretrained(tmp)
            Path(tmp, "preprocessor_config.json").write_text(json.dumps({
                "image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256},
                "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_resize": True,
                "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True}))
            result["embed"] = bench_embed(args.embed_folder, tmp, limit=args.embed_limit)
        e = result["embed"]
        print(f"embed ViT-S/14, {e['images']} images: transformers loop {e['transformers_loop_img_s']:.1f} img/s, "
              f"dinokit embed {e['dinokit_embed_img_s']:.1f} img/s (x{e['speedup']:.2f})")
    print(markdown_table(result))
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
