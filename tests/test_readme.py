"""Every fenced Python and bash block of the README runs, in order, as a reader would paste it: in one
folder holding the files the examples name (photos, image folders, masks, head files), with the real
published names served offline from caches laid out as torch.hub and huggingface_hub lay them out
(random weights of the real ViT-S/14 shapes). A block the machine cannot run says so in the README, on
the line before it: `<!-- readme-test: skip: REASON -->`; `<!-- readme-test: file NAME -->` writes the
block (YAML) to NAME instead of running it."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dinokit
from dinokit.weights.names import dinotxt_urls, lookup
from tests.helpers import (
    HANG,
    SNAPSHOT,
    fake_hf_cache,
    generated_images,
    perturb_,
    sample_photos,
    save_dinotxt_folder,
    save_tiny_model,
)

README = Path(__file__).parents[1] / "README.md"
MARKER = re.compile(r"<!-- readme-test: (skip|file):? (.+?) -->")


def readme_blocks() -> list[tuple[int, str, str, str | None, str | None]]:
    """(line, language, code, marker kind, marker text) of every fenced block, in order."""
    lines = README.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w+)", lines[i])
        if fence:
            end = lines.index("```", i + 1)
            marker = MARKER.fullmatch(lines[i - 1].strip()) if i else None
            blocks.append((i + 1, fence[1], "\n".join(lines[i + 1:end]), *(marker.groups() if marker else (None, None))))
            i = end
        i += 1
    return blocks


BLOCKS = [b for b in readme_blocks() if b[1] in ("python", "bash", "yaml")]

PRELUDE = """
import numpy as np, torch, dinokit
from PIL import Image
pil_image = img = Image.open("photo.jpg").convert("RGB")
numpy_hwc_uint8 = np.asarray(pil_image)
torch_chw_tensor = torch.from_numpy(numpy_hwc_uint8.copy()).permute(2, 0, 1)
pixel_values, labels = torch.randn(1, 3, 224, 224), torch.tensor([3])
model = dinokit.load_model("dinov2_vits14")
"""


def official_files(checkpoints: Path):
    """The official files of the ViT-S/14 names the README uses, random, in their published layouts."""
    from dinokit.heads.depth import DPTDepthHead, LinearDepthHead
    from dinokit.heads.segmentation import LinearSegmentationHead
    from dinokit.weights import to_mmpretrain
    from dinokit.weights.dense import dinokit_dpt_head_to_official

    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    backbone = perturb_(dinokit.Dinov2Model(dinokit.preset_config("s")))
    torch.save(backbone.state_dict(), checkpoints / "dinov2_vits14_pretrain.pth")
    torch.save(perturb_(dinokit.Dinov2Model(dinokit.preset_config("s", True))).state_dict(),
               checkpoints / "dinov2_vits14_reg4_pretrain.pth")
    for name, layers in (("dinov2_vits14_linear4_head.pth", 4), ("dinov2_vits14_reg4_linear_head.pth", 1)):
        torch.save({"weight": torch.randn(1000, (1 + layers) * 384) * 0.02, "bias": torch.zeros(1000)}, checkpoints / name)
    for dataset in ("nyu", "kitti"):
        torch.save(dinokit_dpt_head_to_official(perturb_(DPTDepthHead(384)).state_dict()),
                   checkpoints / f"dinov2_vits14_{dataset}_dpt_head.pth")
    linear4 = perturb_(LinearDepthHead(384, layers=4))
    torch.save({"state_dict": {f"decode_head.{k}": v for k, v in linear4.state_dict().items()}},
               checkpoints / "dinov2_vits14_nyu_linear4_head.pth")
    seg = perturb_(LinearSegmentationHead(384, 150, layers=1))
    torch.save({"meta": {}, "state_dict": {f"decode_head.{k}": v for k, v in seg.state_dict().items()}},
               checkpoints / "dinov2_vits14_ade20k_linear_head.pth")
    torch.save({"state_dict": to_mmpretrain(backbone.state_dict()), "meta": {}},
               checkpoints / "vit-small-p14_dinov2-pre_3rdparty_20230426-5641ca5a.pth")
    dinotxt, _ = save_dinotxt_folder(checkpoints.parent / "dinotxt-files")  # dino.txt on a ViT-S/14 reg4, small text tower
    for kind, url in dinotxt_urls().items():
        pattern = {"backbone": "dinov2_vits14_reg4_pretrain.pth", "vision_head": "*_vision_head.pth",
                   "text_encoder": "*_text_encoder.pth", "vocab": "bpe_simple_vocab_16e6.txt.gz"}[kind]
        shutil.copy(next(dinotxt.glob(pattern)), checkpoints / url.rsplit("/", 1)[-1])
    shutil.copy(dinotxt / "dinotxt_config.json", checkpoints)
    for name in ("dinov3_vits16", "dinov3_convnext_tiny"):  # DINOv3's official files, real shapes
        model = perturb_(getattr(dinokit, name)(pretrained=False))
        torch.save(model.state_dict(), checkpoints / lookup(name).url.rsplit("/", 1)[-1])


def hub_repos(cache: Path):
    import transformers

    small = perturb_(dinokit.Dinov2Model(dinokit.preset_config("s")))
    fake_hf_cache(cache, "facebook/dinov2-small", small)
    snapshot = cache / "models--facebook--dinov2-small" / "snapshots" / SNAPSHOT
    dinokit.Dinov2ImageProcessor().save_pretrained(snapshot)
    tiny = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2)
    classifier = transformers.Dinov2ForImageClassification(transformers.Dinov2Config(**tiny, num_labels=1000))
    fake_hf_cache(cache, "facebook/dinov2-small-imagenet1k-1-layer", perturb_(classifier))
    backbone = transformers.Dinov2Config(**{**tiny, "num_hidden_layers": 4}, intermediate_size=256, image_size=518,
                                         reshape_hidden_states=False, out_features=["stage1", "stage2", "stage3", "stage4"])
    dpt = transformers.DPTConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 64],  # the hub repos' settings
                                 reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=256, add_projection=True,
                                 readout_type="project", is_hybrid=False, use_bias_in_fusion_residual=False,
                                 head_in_index=-1)
    fake_hf_cache(cache, "facebook/dpt-dinov2-small-kitti", perturb_(transformers.DPTForDepthEstimation(dpt), 0.05))
    repo = "facebook/dinov3-vits16-pretrain-lvd1689m"
    fake_hf_cache(cache, repo, perturb_(dinokit.dinov3_vits16(pretrained=False)))
    transformers.DINOv3ViTImageProcessorFast().save_pretrained(cache / f"models--{repo.replace('/', '--')}" / "snapshots"
                                                               / SNAPSHOT)


def example_files(work: Path, home: Path):
    """The files and folders the examples name."""
    photos = {p.name: p for p in sample_photos()}
    for name, source in (("photo.jpg", "chelsea.png"), ("cat.jpg", "chelsea.png"), ("dog.jpg", "coffee.png"),
                         ("query.jpg", "astronaut.png"), ("left.jpg", "rocket.jpg"), ("new.jpg", "motorcycle_left.png")):
        Image.open(photos[source]).convert("RGB").save(work / name)
    right = Image.open(work / "left.jpg")
    right.crop((20, 10, right.width - 10, right.height - 20)).save(work / "right.jpg")
    Image.open(work / "photo.jpg").save(work / "scan.tiff")
    for folder, names in (("photos", ["astronaut.png", "coffee.png", "chelsea.png"]), ("seeds", ["rocket.jpg"]),
                          ("web-images", list(photos)[:8]), ("benchmark/val", ["coffee.png"])):
        (home / folder).mkdir(parents=True)
        for n in names:
            shutil.copy(photos[n], home / folder / n)
    (work / "more_paths.txt").write_text(f"{photos['camera.png']}\n")
    generated_images(home / "images", 16)
    (work / "folder").mkdir()
    shutil.copy(photos["coffee.png"], work / "folder")
    (work / "list.txt").write_text(f"{photos['rocket.jpg']}\n")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for c, name in enumerate(["red", "green", "blue"]):
            (work / "data" / split / name).mkdir(parents=True)
            for i in range(count):
                arr = rng.integers(0, 90, (64, 64, 3), dtype=np.uint8)
                arr[..., c] = 200
                Image.fromarray(arr).save(work / "data" / split / name / f"{i}.png")
    for sub in ("images", "masks"):
        (work / "my" / sub).mkdir(parents=True)
    for i in range(4):
        mask = np.zeros((112, 112), np.uint8)
        mask[20 + 10 * i:80, 30:90] = 1
        Image.fromarray(np.where(mask[..., None] > 0, 220, 40).astype(np.uint8).repeat(3, axis=2)).save(
            work / "my" / "images" / f"{i}.png")
        Image.fromarray(mask).save(work / "my" / "masks" / f"{i}.png")
    (work / "path" / "to").mkdir(parents=True)
    tiny = save_tiny_model(work / "tiny", noise=0.1)
    torch.save(dinokit.Dinov2Model.from_pretrained(tiny).state_dict(), work / "path" / "to" / "dinov2_vitl14_pretrain.pth")
    perturb_(dinokit.Dinov2Model(dinokit.preset_config("s"))).save_pretrained(work / "path" / "to" / "hf_folder")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    work, home = root / "work", root / "home"
    work.mkdir()
    official_files(root / "torch" / "hub" / "checkpoints")
    hub_repos(root / "hf")
    example_files(work, home)
    for name in ("dinov2_vits14_pretrain.pth", "dinov2_vits14_linear4_head.pth", "dinov2_vits14_nyu_linear4_head.pth"):
        shutil.copy(root / "torch" / "hub" / "checkpoints" / name, work / name)
    for _, _, code, kind, name in BLOCKS:  # files the examples read, whatever their place in the README
        if kind == "file":
            (work / name).write_text(code + "\n")
    env = {**os.environ, "HOME": str(home), "TORCH_HOME": str(root / "torch"), "HF_HUB_CACHE": str(root / "hf"),
           "HF_HUB_OFFLINE": "1", "DINOKIT_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return work, env


@pytest.mark.slow
@pytest.mark.parametrize("line, language, code, kind, note", BLOCKS, ids=[f"line{b[0]}-{b[1]}" for b in BLOCKS])
def test_readme_block_runs(sandbox, line, language, code, kind, note):
    work, env = sandbox
    if kind == "skip":
        pytest.skip(f"README line {line}: {note}")
    if kind == "file":
        assert (work / note).read_text() == code + "\n"  # written by the sandbox, before every block
        return
    if language == "yaml":
        return  # a YAML block without a file marker is an excerpt, shown for reading
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", PRELUDE + code]
    run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=HANG)
    assert run.returncode == 0, f"README line {line}:\n{code}\n--- stderr ---\n{run.stderr[-4000:]}"


def test_every_block_is_run_or_says_why_not():
    """The README's blocks are the ones above: each Python or bash block runs unless its marker gives a
    reason, and a YAML block is either a file the examples read or an excerpt."""
    assert len([b for b in BLOCKS if b[1] == "python"]) >= 5 and len([b for b in BLOCKS if b[1] == "bash"]) >= 8
    for line, _, _, kind, note in BLOCKS:
        assert kind in (None, "skip", "file"), line
        assert kind != "skip" or len(note) > 10, f"README line {line}: say why the block is not run"
