"""Helpers shared by the tests: the command line as a user runs it, small saved models, generated images."""
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dinokit

SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
                  "logo.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg")


def sample_photos() -> list[Path]:
    """The 11 test photos, sorted by name: the sample images scikit-image and scikit-learn install with them
    (RGB, grayscale and RGBA; JPEG and PNG; 451x300 to 1411x1411), so a fresh clone tests on them too."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    files = [Path(skimage.data.data_dir) / name for name in SKIMAGE_PHOTOS]
    files += [Path(f) for f in load_sample_images().filenames]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, f"sample photos missing from the installed packages: {missing}"
    return sorted(files, key=lambda f: f.name)


HANG = 3600  # subprocess limits only catch a hung job; a loaded 2-core host must never reach them


def cli(*args, env=None, timeout=HANG):
    return subprocess.run([sys.executable, "-m", "dinokit", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def torchrun(nproc, *args, timeout=HANG):
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


def perturb_(module: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Random weights everywhere (LayerNorm and LayerScale included), so parity covers every tensor."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)
    return module.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def fake_hf_cache(root, repo_id, model):
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)
    model.save_pretrained(repo / "snapshots" / SNAPSHOT)


def broken_files(tmp_path):
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(good, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image at all")
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return {
        "truncated.jpg": "truncated", "empty.png": "empty", "notes.jpg": "not an image",
        "garbage.png": "", "missing.jpg": "file not found",
    }


def clip_vocab() -> Path:
    """CLIP's BPE vocabulary as open_clip ships it: the same file as dino.txt's official download."""
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def save_dinotxt_folder(folder, *, width=128, heads=4, layers=2, seed=0, noise=0.05, dinov3=False):
    """A random dino.txt at small size, written as the official files are laid out: the backbone checkpoint
    (ViT-S/14 reg4 here), `..._vision_head.pth` and `..._text_encoder.pth` in the official modules' key names,
    and the vocabulary; the head count the shapes do not fix goes in dinotxt_config.json. `dinov3`: DINOv3's
    layout instead (a 2-block DINOv3 ViT-S/16 backbone, one `..._vision_head_and_text_encoder-….pth`)."""
    import json
    import shutil

    from dinokit.models.config import preset_config
    from dinokit.models.dinotxt import DinoTxt, DinoTxtConfig
    from dinokit.models.dinov3 import dinov3_vit_config
    from dinokit.weights.dinotxt import dinokit_to_official, join_head_and_text

    torch.manual_seed(seed)
    backbone = dinov3_vit_config("s", num_hidden_layers=2) if dinov3 else preset_config("s", registers=True)
    model = DinoTxt(DinoTxtConfig(embed_dim=768, text_width=width, text_heads=heads, text_layers=layers,
                                  backbone=backbone))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = "dinov2_vitl14_reg4_dinotxt_tet1280d20h24l"
    head, text = dinokit_to_official(model.state_dict())
    if dinov3:
        torch.save(model.backbone.state_dict(), folder / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
        torch.save({**join_head_and_text(head, text), "logit_scale": model.logit_scale.detach().clone()},
                   folder / "dinov3_vitl16_dinotxt_vision_head_and_text_encoder-a442d8f5.pth")
    else:
        torch.save(model.backbone.state_dict(), folder / "dinov2_vits14_reg4_pretrain.pth")
        torch.save(head, folder / f"{name}_vision_head.pth")
        torch.save(text, folder / f"{name}_text_encoder.pth")
    shutil.copy(clip_vocab(), folder / "bpe_simple_vocab_16e6.txt.gz")
    (folder / "dinotxt_config.json").write_text(json.dumps({"text_heads": heads}))
    return folder, model.eval()
