"""The single-core rates behind "Why the exact CPU goals are out of reach" in docs/performance.md:
`python docs/cpu_limits.py [--photos FOLDER]`.

One thread each: MKL's `torch.matmul` 2048², the packed oneDNN GEMM of dinokit's Linear layers on ViT-S's
shapes, PyTorch's fused attention at 257 and 1,370 tokens, and the whole ViT-S forward (4 images, every
token, FLOPs counted as `dinokit bench` counts them) with its time per operation. Then, on all threads, the ViT-S CLS forward at batch 8 alone and, with
`--photos`, the CPU time of decoding and preprocessing one image: together, the ceiling of `dinokit embed`.
`--side-by-side` also times batches with the pieces side by side against the same code without them
(DINOKIT_CPU_STREAMS=0), interleaved, median of 6.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from dinokit.bench import _random_model, matmul_peak_gflops, vit_flops
from dinokit.models import inference
from dinokit.models.inference import linear


def seconds(run, repeats: int = 10) -> float:
    for _ in range(2):
        run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", help="a folder of images: also time decoding and preprocessing")
    parser.add_argument("--side-by-side", action="store_true", help="also time the pieces side by side vs not")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = _random_model("s").eval()
    with torch.inference_mode():
        print(f"1 thread, torch.matmul 2048² (best of 10): {matmul_peak_gflops():.1f} GFLOP/s")
        for layer in (model.blocks[0].attn.qkv, model.blocks[0].mlp.fc1, model.blocks[0].mlp.fc2):
            x = torch.randn(4 * 257, layer.in_features)
            rate = 2 * x.shape[0] * layer.in_features * layer.out_features / seconds(lambda: linear(layer, x))
            print(f"1 thread, packed Linear {layer.in_features}→{layer.out_features} on 4×257 tokens: "
                  f"{rate / 1e9:.1f} GFLOP/s")
        for batch, n in ((4, 257), (1, 1370)):
            q, k, v = (torch.randn(batch, 6, n, 64) for _ in range(3))
            rate = 4 * batch * 6 * n * n * 64 / seconds(lambda: F.scaled_dot_product_attention(q, k, v))
            print(f"1 thread, scaled_dot_product_attention, {batch}×{n} tokens: {rate / 1e9:.1f} GFLOP/s")
        images = torch.randn(4, 3, 224, 224)
        rate = vit_flops(model.config, 4, 224) / seconds(lambda: model(images), repeats=5)
        print(f"1 thread, ViT-S forward, 4 images: {rate / 1e9:.1f} GFLOP/s")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(images)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
        torch.set_num_threads(threads)
        batch8 = torch.randn(8, 3, 224, 224)
        model_img_s = 8 / seconds(lambda: model.forward_class_token(batch8), repeats=5)
        print(f"{threads} threads, ViT-S forward_class_token, batch 8: {model_img_s:.2f} images/s")
        if args.side_by_side:
            for batch in (2, 8, 32):
                x = torch.randn(batch, 3, 224, 224)
                times = {True: [], False: []}
                for _ in range(7):  # the first round warms up
                    for on in times:
                        inference._CPU_STREAMS = on
                        start = time.perf_counter()
                        model.forward_class_token(x)
                        times[on].append(time.perf_counter() - start)
                inference._CPU_STREAMS = True
                ratio = statistics.median(times[False][1:]) / statistics.median(times[True][1:])
                print(f"{threads} threads, batch {batch}: pieces side by side ×{ratio:.2f} over every op on all threads")
    if args.photos:
        from dinokit.data import ImageFiles, list_images
        from dinokit.data.processor import Dinov2ImageProcessor

        files = ImageFiles.from_paths(list_images([args.photos]), Dinov2ImageProcessor())
        torch.set_num_threads(1)
        per_image = seconds(lambda: [files[i] for i in range(len(files))], repeats=2) / len(files)
        torch.set_num_threads(threads)
        ceiling = 1 / (1 / model_img_s + per_image / threads)
        print(f"decode + preprocess, 1 thread: {1000 * per_image:.1f} ms per image; with the model, both "
              f"overlapped on {threads} threads, embed can reach at most {ceiling:.1f} images/s")


if __name__ == "__main__":
    main()
