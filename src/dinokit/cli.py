"""The `dinokit` command: parse arguments, call a job, print. Every command also runs as `python -m dinokit`."""
from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _cmd_models(args) -> int:
    from .weights.names import MODEL_SOURCES

    rows = [dict(name=n, size=s.size, registers=s.registers, source=s.repo_id or s.url) for n, s in sorted(MODEL_SOURCES.items())]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:42s} {r['source']}")
    return EXIT_OK


def _cmd_info(args) -> int:
    from . import load_model

    model = load_model(args.model, interpolate_mode=args.interpolate_mode)
    info = {**model.config.to_dict(), "model": args.model, "parameters": model.num_parameters(),
            "interpolate_mode": model.interpolate_mode}
    print(json.dumps(info, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    return EXIT_OK


def _cmd_embed(args) -> int:
    from .features import embed
    from .features.embed import summary_json

    s = embed(args.inputs, args.output, args.model, pooling=args.pooling, normalize=args.normalize,
              image_size=args.image_size, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
              num_workers=args.num_workers, keep_patches=args.keep_patches, shard_size=args.shard_size,
              interpolate_mode=args.interpolate_mode, backend=args.backend, progress=not args.json)
    if int(os.environ.get("RANK", 0)) != 0:
        return EXIT_PARTIAL if s.failed else EXIT_OK
    if args.json:
        print(summary_json(s))
    elif s.done == 0 and s.failed == 0:
        print(f"nothing to do: all {s.total} images of {args.inputs} are already in {s.output}")
    else:
        print(f"embedded {s.done} images in {s.seconds:.1f}s ({s.images_per_second:.1f} img/s); "
              f"skipped {s.skipped} already done; failed {s.failed} → {s.output}")
        for path, reason in s.failures[:20]:
            print(f"  failed: {path}: {reason}")
        if s.failed:
            print(f"  the list of failed images: {s.output}.failures.tsv")
    return EXIT_PARTIAL if s.failed else EXIT_OK


def _cmd_index(args) -> int:
    from .features import build_index

    meta = build_index(args.embeddings, args.output, kind=args.kind)
    print(json.dumps(meta, indent=2) if args.json else f"indexed {meta['count']} embeddings ({meta['kind']}) → {args.output}")
    return EXIT_OK


def _cmd_search(args) -> int:
    from .features import search
    from .data import list_images

    queries = [str(p) for p in list_images(args.query)]
    results = search(args.query, args.index, k=args.k, device=args.device)
    if args.json:
        print(json.dumps([{"query": q, "hits": [{"path": h.path, "score": round(h.score, 6)} for h in hits]}
                          for q, hits in zip(queries, results)], indent=2))
    else:
        for q, hits in zip(queries, results):
            print(q)
            for rank, h in enumerate(hits, 1):
                print(f"  {rank:3d}  {h.score:.4f}  {h.path}")
    return EXIT_OK


def _cmd_dedup(args) -> int:
    from .features import dedup

    groups = dedup(args.embeddings, threshold=args.threshold)
    if args.json:
        print(json.dumps({"threshold": args.threshold, "groups": groups}, indent=2))
    else:
        for i, g in enumerate(groups, 1):
            print(f"group {i} ({len(g)} images):")
            for p in g:
                print(f"  {p}")
        print(f"{len(groups)} groups of near-duplicates (cosine >= {args.threshold})")
    return EXIT_OK


def _cmd_viz_pca(args) -> int:
    from . import Dinov2Model
    from .features import pca_figure

    model = Dinov2Model.from_pretrained(args.model, interpolate_mode=args.interpolate_mode)
    figure = pca_figure(model, args.images, size=args.image_size, threshold=args.threshold,
                        remove_background=not args.keep_background)
    figure.save(args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def _cmd_viz_attention(args) -> int:
    from . import Dinov2Model
    from .features.attention import attention_figure

    model = Dinov2Model.from_pretrained(args.model, interpolate_mode=args.interpolate_mode)
    attention_figure(model, args.image, size=args.image_size).save(args.output)
    print(f"wrote {args.output}")
    return EXIT_OK


def _cmd_classify(args) -> int:
    import torch

    from . import Dinov2ForImageClassification, load_model
    from .data import Dinov2ImageProcessor, load_image

    model = load_model(args.model, interpolate_mode=args.interpolate_mode, **({"layers": args.layers} if args.layers else {}))
    if not isinstance(model, Dinov2ForImageClassification):
        raise ValueError(f"{args.model} has no classification head: use an `_lc` name (dinov2_vits14_lc), "
                         "a *-imagenet1k-1-layer repo, or a folder written by `dinokit finetune`")
    processor = Dinov2ImageProcessor.from_pretrained(args.model)
    results = []
    for path in args.images:
        with torch.inference_mode():
            probs = model(processor(load_image(path)).pixel_values).logits.softmax(-1)[0]
        top = probs.topk(min(args.top_k, probs.numel()))
        labels = model.config.id2label or {}
        results.append({"image": path, "predictions": [
            {"label": labels.get(int(i), str(int(i))), "index": int(i), "probability": round(float(p), 6)}
            for p, i in zip(top.values, top.indices)]})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(r["image"])
            for p in r["predictions"]:
                print(f"  {p['probability']:.4f}  {p['label']}")
    return EXIT_OK


def _cmd_export(args) -> int:
    from . import load_model
    from .runtime.export import export_model

    model = load_model(args.model, interpolate_mode=args.interpolate_mode)
    report = export_model(model, args.format, args.output, image_size=args.image_size)
    print(f"wrote {report.path} ({report.format}, {report.image_size}x{report.image_size}, dynamic batch); "
          f"max abs difference from eager PyTorch: {report.max_abs_diff:.2e}")
    return EXIT_OK if report.max_abs_diff <= 1e-4 else EXIT_FATAL


def _cmd_finetune(args) -> int:
    from .finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(train=args.train, val=args.val, model=args.model, output=args.output, mode=args.mode,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, layer_decay=args.layer_decay,
                         image_size=args.image_size, min_crop_scale=args.min_crop_scale, flip=not args.no_flip,
                         num_workers=args.num_workers, device=args.device, seed=args.seed)
    result = finetune(cfg, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        acc = result.get("val_accuracy")
        print(f"trained on {result['train_images']} images of {len(result['classes'])} classes in {result['seconds']}s"
              + (f"; validation accuracy {acc:.3f} (chance {result['chance']:.3f})" if acc is not None else "")
              + f" → {args.output}")
    return EXIT_OK


def _cmd_eval(args) -> int:
    from .eval import eval_knn, eval_linear

    common = dict(image_size=args.image_size, num_workers=args.num_workers, device=args.device,
                  cache_dir=None if args.no_cache else args.cache_dir, interpolate_mode=args.interpolate_mode,
                  progress=not args.json)
    if args.protocol == "knn":
        r = eval_knn(args.train, args.val, args.model, ks=tuple(args.ks), temperature=args.temperature,
                     train_labels=args.train_labels, val_labels=args.val_labels, **common)
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            print(f"k-NN ({r['train_images']} train / {r['val_images']} val images, {r['classes']} classes, "
                  f"T={r['temperature']}, model {r['model']})")
            print(f"{'k':>5}  {'top-1':>7}  {'top-5':>7}")
            for row in r["results"]:
                print(f"{row['k']:>5}  {100 * row['top1']:6.2f}%  {100 * row['top5']:6.2f}%")
        return EXIT_OK
    r = eval_linear(args.train, args.val, args.model, augment=args.augment, epochs=args.epochs,
                    batch_size=args.batch_size, logreg=args.logreg, seed=args.seed, **common)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        b = r["best"]
        print(f"linear probe ({r['train_images']} train + {r['holdout_images']} held-out images, {r['augmentation']}, "
              f"{r['epochs']} epochs, model {r['model']})")
        print(f"{'blocks':>6}  {'avgpool':>7}  {'best lr':>8}  {'held-out':>8}  {'val':>7}")
        for blocks in sorted({g['blocks'] for g in r['grid']}):
            for avg in (False, True):
                rows = [g for g in r["grid"] if g["blocks"] == blocks and g["avgpool"] == avg]
                if rows:
                    g = max(rows, key=lambda x: x["holdout_accuracy"])
                    print(f"{blocks:>6}  {str(avg):>7}  {g['lr']:>8.0e}  {100 * g['holdout_accuracy']:7.2f}%  "
                          f"{100 * g['val_accuracy']:6.2f}%")
        print(f"best (chosen on the held-out split): blocks={b['blocks']} avgpool={b['avgpool']} lr={b['lr']:.0e} "
              f"→ validation accuracy {100 * b['val_accuracy']:.2f}%")
        if "logistic_regression" in r:
            lr = r["logistic_regression"]
            print(f"logistic regression: C={lr['best_C']:.2e} → validation accuracy {100 * lr['val_accuracy']:.2f}%")
    return EXIT_OK


def _cmd_curate(args) -> int:
    from . import curate

    if args.step == "pipeline":
        report = curate.run_pipeline(curate.load_config(args.config), args.output, progress=not args.json)
        if args.json:
            print(json.dumps({k: v for k, v in report.items() if k != "duplicate_groups"}, indent=2, default=str))
        else:
            for s in report["steps"]:
                print(f"{s['step']:>13}: {s['input']} → {s['kept']} ({s['removed']} removed) in {s['seconds']}s"
                      + (" (reused)" if s.get("resumed") else ""))
            print(f"{report['output_count']} images → {report['paths']}; report: "
                  f"{os.path.join(os.path.dirname(report['paths']), 'report.md')}")
        return EXIT_OK
    pool = curate.read_pool(args.embeddings)
    options = {k: v for k, v in vars(args).items() if k in STEP_OPTIONS[args.step] and v is not None}
    result = getattr(curate, args.step)(pool, **curate.read_pool_arguments(args.step, options), progress=not args.json)
    curate.write_pool(result.kept, args.output)
    if result.removed is not None:
        removed = args.output[: -len(".parquet")] if args.output.endswith(".parquet") else args.output
        result.summary["removed_file"] = str(curate.write_pool(result.removed, removed + ".removed.parquet"))
    s = result.summary
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    else:
        print(f"{args.step}: {s['input']} → {s['kept']} images ({s['removed']} removed) → {args.output}"
              + (f"; removed images with the reason: {s['removed_file']}" if "removed_file" in s else ""))
        for key in ("duplicate_groups", "nearest_neighbour_similarity", "entropy_before", "entropy_after"):
            if key in s:
                print(f"  {key}: {s[key]}")
    return EXIT_OK


def _cmd_depth(args) -> int:
    from .dense import write_depth

    written = write_depth(args.images, args.output, args.model, backbone=args.backbone, raw_format=args.raw,
                          short_side=args.short_side or None, device=args.device)
    print(f"{len(written)} depth pictures → {args.output}/ (<name>_depth.png, raw: <name>_depth"
          + (".npy, metres)" if args.raw == "npy" else "16.png, metres × 256)"))
    return EXIT_OK


def _cmd_segment(args) -> int:
    from .dense import write_segmentation

    written = write_segmentation(args.images, args.output, args.head, backbone=args.backbone, device=args.device)
    print(f"{len(written)} segmentations → {args.output}/ (<name>_seg.png with legend, <name>_mask.png class indices)")
    return EXIT_OK


def _cmd_train_seg(args) -> int:
    from dataclasses import asdict

    from .dense import train_segmentation

    r = train_segmentation(args.images, args.masks, args.output, args.model, layers=args.layers,
                           image_size=args.image_size, epochs=args.epochs, lr=args.lr, holdout=args.holdout,
                           num_classes=args.num_classes, device=args.device, progress=not args.json)
    if args.json:
        print(json.dumps(asdict(r), indent=2))
    else:
        print(f"trained on {r.train_images} images, {r.classes} classes in {r.seconds}s; held-out mIoU "
              f"{100 * r.miou:.1f}% (majority-class baseline {100 * r.chance_miou:.1f}%) → {r.output}")
        for name, iou in r.per_class_iou.items():
            print(f"  {name}: {100 * iou:.1f}%")
    return EXIT_OK


def _cmd_match(args) -> int:
    from .dense import write_match

    m = write_match(args.image_a, args.image_b, args.output, args.model, max_matches=args.max_matches,
                    short_side=args.short_side, device=args.device)
    print(f"{len(m.scores)} mutual nearest-neighbour matches (cosine {m.scores.min() if len(m.scores) else 0:.2f}–"
          f"{m.scores.max() if len(m.scores) else 0:.2f}) → {args.output}")
    return EXIT_OK


def _cmd_train(args) -> int:
    import yaml

    from .train import TrainingDiverged, load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False))
        return EXIT_OK
    try:
        r = train(cfg, args.output, resume=args.resume, progress=not args.json)
    except TrainingDiverged as e:
        print(f"dinokit train: stopped: {e}", file=sys.stderr)
        return EXIT_FATAL
    if args.json:
        print(json.dumps({"output": r.output, "steps": r.steps, "losses": r.last_losses, "seconds": r.seconds,
                          "knn": r.knn}, indent=2))
    else:
        print(f"trained {r.steps} steps in {r.seconds}s; last loss {r.last_losses.get('loss', float('nan')):.4f}; "
              f"model → {r.output}/model (use it with --model {r.output}/model)")
    return EXIT_OK


STEP_OPTIONS = {
    "dedup": ("threshold", "k", "keep", "index"),
    "decontaminate": ("protected", "threshold", "index"),
    "retrieve": ("seeds", "mode", "n", "clusters", "per_cluster", "min_score", "index", "seed"),
    "balance": ("target", "levels", "strategy", "iterations", "seed"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinokit", description="DINOv2 models, features and tools")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the published model names dinokit loads")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("info", help="load a model (name, folder or file) and print its configuration")
    p.add_argument("model")
    p.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("embed", help="embed images (folders, files of paths, images) into a Parquet dataset")
    p.add_argument("inputs", nargs="+", help="folders (recursive), text files with one path per line, or images")
    p.add_argument("-o", "--output", required=True, help="output folder of Parquet shards (e.g. photos.parquet)")
    p.add_argument("--model", default="dinov2_vits14", help="name, Hugging Face id, folder or checkpoint file")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean", "cls+mean"])
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.add_argument("--image-size", type=int, help="crop size (the short side is resized to 256/224 of it)")
    p.add_argument("--batch-size", type=int, help="default: 8 on CPU, 64 on GPU")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16 (GPU)")
    p.add_argument("--num-workers", type=int, help="image decoding processes (default: min(4, cores))")
    p.add_argument("--keep-patches", action="store_true", help="also store the patch tokens (float16)")
    p.add_argument("--shard-size", type=int, help="images per shard (default 4096; 128 with --keep-patches)")
    p.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    p.add_argument("--backend", default="eager",
                   help="eager (default, exact); opt-in: compile, onnxruntime (exact), onnxruntime-int8 and int8 "
                        "(CPU, not exact), cuda-graphs (GPU): see docs/performance.md")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("index", help="build a FAISS index (cosine) from embeddings")
    p.add_argument("embeddings")
    p.add_argument("-o", "--output", required=True, help="index folder")
    p.add_argument("--kind", default="auto", choices=["auto", "flat", "ivf"], help="auto: exact below 100k vectors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("search", help="nearest images of a query image (or a text file of query images)")
    p.add_argument("query", nargs="+")
    p.add_argument("--index", required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("dedup", help="groups of near-duplicate images in an embeddings file")
    p.add_argument("embeddings")
    p.add_argument("--threshold", type=float, default=0.95, help="cosine similarity (default 0.95)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_dedup)

    p = sub.add_parser("viz", help="pictures of what the features see")
    viz = p.add_subparsers(dest="picture", required=True)
    q = viz.add_parser("pca", help="first three PCA components of the patch features as RGB")
    q.add_argument("images", nargs="+")
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--model", default="dinov2_vits14")
    q.add_argument("--image-size", type=int, default=448)
    q.add_argument("--threshold", type=float, default=0.0, help="on the first component, for the foreground")
    q.add_argument("--keep-background", action="store_true")
    q.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    q.set_defaults(func=_cmd_viz_pca)
    q = viz.add_parser("attention", help="the last layer's CLS attention, one map per head")
    q.add_argument("image")
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--model", default="dinov2_vits14")
    q.add_argument("--image-size", type=int, default=448)
    q.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    q.set_defaults(func=_cmd_viz_attention)

    p = sub.add_parser("classify", help="top-k labels of images with a classifier (ImageNet `_lc` or your own)")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", default="dinov2_vits14_lc")
    p.add_argument("--layers", type=int, choices=[1, 4], help="official linear head over 1 or 4 blocks (default 4)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("finetune", help="train a classifier on an ImageFolder dataset (linear probe or full)")
    p.add_argument("--train", required=True, help="ROOT/<class>/<image>")
    p.add_argument("--val", help="same layout, same classes; evaluated at the end")
    p.add_argument("--model", default="dinov2_vits14")
    p.add_argument("-o", "--output", required=True, help="folder: the classifier, its checkpoint (for resuming)")
    p.add_argument("--mode", default="linear", choices=["linear", "full"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="default 1e-3 (linear) or 5e-5 (full) × batch/32")
    p.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise lr decay (full mode)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--min-crop-scale", type=float, default=0.08, help="RandomResizedCrop's smallest area fraction")
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (text, digits)")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_finetune)

    from .eval.run import DEFAULT_CACHE

    p = sub.add_parser("eval", help="the paper's k-NN and linear-probe protocols on an image folder")
    ev = p.add_subparsers(dest="protocol", required=True)
    for name, text in (("knn", "k-NN classification (cosine, top 200, softmax(sim/T))"),
                       ("linear", "linear probe over a grid of blocks, avgpool and learning rates")):
        q = ev.add_parser(name, help=text)
        q.add_argument("--train", required=True, help="ImageFolder (ROOT/<class>/<image>) or embeddings Parquet")
        q.add_argument("--val", required=True)
        q.add_argument("--model", default="dinov2_vits14")
        q.add_argument("--image-size", type=int, default=224, help="crop size of the evaluation transform")
        q.add_argument("--num-workers", type=int, default=2)
        q.add_argument("--device", default="cpu")
        q.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where features are cached")
        q.add_argument("--no-cache", action="store_true")
        q.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=_cmd_eval)
    knn = ev.choices["knn"]
    knn.add_argument("--ks", type=int, nargs="+", default=[10, 20, 100, 200])
    knn.add_argument("--temperature", type=float, default=0.07)
    knn.add_argument("--train-labels", help="CSV path,label for Parquet input without a label column")
    knn.add_argument("--val-labels")
    lin = ev.choices["linear"]
    lin.add_argument("--augment", type=int, default=0, help="cache K augmented views per training image")
    lin.add_argument("--epochs", type=int, default=100)
    lin.add_argument("--batch-size", type=int, default=256)
    lin.add_argument("--logreg", action="store_true", help="also logistic regression with a sweep of C")
    lin.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("curate", help="data curation: dedup, decontaminate, retrieve, balance, pipeline")
    cu = p.add_subparsers(dest="step", required=True)
    q = cu.add_parser("pipeline", help="run the steps of a YAML file; writes paths.txt, curated.parquet, report")
    q.add_argument("config", help="YAML: pool, output, steps (see docs/curation.md)")
    q.add_argument("-o", "--output", help="output folder (default: the YAML's output)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_cmd_curate)
    for name, text in (("dedup", "keep one image per group of near-duplicates"),
                       ("decontaminate", "remove near-duplicates of protected (evaluation) images"),
                       ("retrieve", "keep the pool images nearest to seed images"),
                       ("balance", "hierarchical k-means, then a sample balanced across clusters")):
        q = cu.add_parser(name, help=text)
        q.add_argument("embeddings", nargs="+",
                       help="embeddings (`dinokit embed` output folder or Parquet)")
        q.add_argument("-o", "--output", required=True, help="Parquet file of the kept images")
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=_cmd_curate)
        if name in ("dedup", "decontaminate"):
            q.add_argument("--threshold", type=float, help="cosine similarity of a near-duplicate (default 0.95)")
        if name != "balance":
            q.add_argument("--index", choices=["auto", "flat", "ivf"], help="FAISS index (auto: exact below 100k)")
    cu.choices["dedup"].add_argument("--k", type=int, help="neighbours per image in the duplicate graph (64)")
    cu.choices["dedup"].add_argument("--keep", choices=["largest", "centroid", "first"],
                                     help="which image of a group stays: the most pixels (default), the one nearest "
                                          "the group's mean, or the first path")
    cu.choices["decontaminate"].add_argument("--protected", nargs="+", required=True, help="embeddings of protected sets")
    r = cu.choices["retrieve"]
    r.add_argument("--seeds", required=True, help="embeddings of the curated seed images")
    r.add_argument("--mode", choices=["sample", "cluster"])
    r.add_argument("--n", type=int, help="sample mode: neighbours per seed (4)")
    r.add_argument("--clusters", type=int, help="cluster mode: k-means clusters (default √N)")
    r.add_argument("--per-cluster", type=int, help="cluster mode: images kept per cluster with seeds (100)")
    r.add_argument("--min-score", type=float, help="sample mode: least cosine similarity to the seed")
    r.add_argument("--seed", type=int)
    b = cu.choices["balance"]
    b.add_argument("--target", type=int, required=True, help="how many images to keep")
    b.add_argument("--levels", type=int, nargs="+", help="clusters per level, fine to coarse (default √N, ÷10, ÷10)")
    b.add_argument("--strategy", choices=["random", "closest"], help="which images inside a cluster (random)")
    b.add_argument("--iterations", type=int)
    b.add_argument("--seed", type=int)

    p = sub.add_parser("depth", help="depth maps: coloured picture + raw depth (16-bit PNG or .npy)")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--model", default="dinov2_vits14_nyu_dpt",
                   help="official name (dinov2_vits14_{nyu,kitti}_{linear,linear4,dpt}), transformers DPT repo or "
                        "folder, or an official head file with --backbone")
    p.add_argument("--backbone", help="the backbone of a head file (name or path)")
    p.add_argument("--raw", choices=["png16", "npy"], default="png16")
    p.add_argument("--short-side", type=int, default=448, help="resize the shorter side first (0: keep the size)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_depth)

    p = sub.add_parser("segment", help="semantic segmentation: coloured mask with legend + class-index PNG")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--head", required=True, help="a train-seg folder, an official name "
                   "(dinov2_vits14_ade20k_linear, …_voc2012_ms) or an official head file with --backbone")
    p.add_argument("--backbone")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("train-seg", help="train a linear segmentation head on your (image, mask) pairs")
    p.add_argument("--images", required=True)
    p.add_argument("--masks", required=True, help="PNG class-index masks named like the images; 255 = ignore")
    p.add_argument("-o", "--output", required=True, help="head folder (load it with `segment --head`)")
    p.add_argument("--model", default="dinov2_vits14")
    p.add_argument("--layers", type=int, choices=[1, 4], default=1, help="last block, or last four blocks")
    p.add_argument("--image-size", type=int, default=448)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-2, help="peak of the one-cycle schedule (AdamW)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of pairs held out for the mIoU")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_train_seg)

    p = sub.add_parser("match", help="dense correspondences: mutual nearest-neighbour patch matches as lines")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("-o", "--output", required=True, help="output picture (PNG)")
    p.add_argument("--model", default="dinov2_vits14")
    p.add_argument("--max-matches", type=int, default=100)
    p.add_argument("--short-side", type=int, default=448)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_match)

    p = sub.add_parser("train", help="self-supervised pretraining / distillation with the DINOv2 recipe")
    p.add_argument("--config", help="a YAML file or a preset: vitl16_short, vitl14, vitg14, distill_vit{s,b,l}14, smoke")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE, e.g. train.dataset_path=~/images train.batch_size_per_gpu=32")
    p.add_argument("-o", "--output", help="output folder (default: train.output_dir)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pth")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_train)

    sub.add_parser("bench", help="speed against transformers, timm and the official code (see `dinokit bench --help`)")

    p = sub.add_parser("export", help="ONNX, TorchScript or torch.export program, verified against PyTorch")
    p.add_argument("model")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported-program"])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--image-size", type=int, default=224, help="square input size (batch stays dynamic)")
    p.add_argument("--interpolate-mode", choices=["official", "hf", "timm"])
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own parser: `dinokit bench --help`
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    from .features.embed import UsageError

    if int(os.environ.get("RANK", 0)) > 0:  # under torchrun, rank 0 alone prints results
        sys.stdout = open(os.devnull, "w")
    try:
        return args.func(args)
    except UsageError as e:
        print(f"dinokit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"dinokit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FATAL
