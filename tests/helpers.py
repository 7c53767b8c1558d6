"""Helpers shared by the tests: the command line as a user runs it, small saved models, generated images."""
import io
import os
import socket
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

import dinokit


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "dinokit", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def torchrun(nproc, *args, timeout=600):
    """`python -m torch.distributed.run --nproc-per-node N -m dinokit ARGS` on a free port, one thread each."""
    with socket.socket() as sock:  # a free port, so parallel runs do not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", str(port),
         "-m", "dinokit", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def save_tiny_model(folder, noise):
    torch.manual_seed(0)
    model = dinokit.Dinov2Model(dinokit.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                     image_size=224))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    model.save_pretrained(folder)
    return folder


def generated_images(folder, count, seed=0, size=(80, 96)):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        path = folder / f"gen_{i:04d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def make_copies(folder, originals):
    """Re-encoded, resized and slightly cropped copies: the near-duplicates of the copy-detection step."""
    planted = {}
    for f in originals:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        copies = {
            "jpeg": lambda im: _reencode(im, 70),
            "resized": lambda im: im.resize((int(w * 0.7), int(h * 0.7)), Image.BILINEAR),
            "cropped": lambda im: im.crop((int(w * 0.03), int(h * 0.03), int(w * 0.97), int(h * 0.97))),
        }
        planted[f.name] = [f.name]
        for kind, make in copies.items():
            name = f"{f.stem}_{kind}.png"
            make(img).save(folder / name)
            planted[f.name].append(name)
    return planted


def _reencode(img, quality):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
