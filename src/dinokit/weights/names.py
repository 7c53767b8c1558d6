"""Published model names → where their weights live and which architecture they are."""
from __future__ import annotations

import functools
from dataclasses import dataclass

_SIZE_WORDS = {"s": "small", "b": "base", "l": "large", "g": "giant"}
OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
MMPRETRAIN_BASE_URL = "https://download.openmmlab.com/mmpretrain/v1.0/dinov2"
_MMPRETRAIN_HASHES = {"s": "5641ca5a", "b": "ba246503", "l": "f3302d9e", "g": "2934a630"}


@dataclass(frozen=True)
class ModelSource:
    """One published checkpoint: a Hugging Face repo (`repo_id`) or a URL of a single file."""

    size: str
    registers: bool
    repo_id: str | None = None
    url: str | None = None
    interpolate_mode: str | None = None
    linear_head: bool = False  # torch.hub `_lc` names: backbone URL + the official linear head files
    family: str = "dinov2"  # or dinov3_vit, dinov3_convnext
    dataset: str = "lvd1689m"  # DINOv3: lvd1689m, or sat493m (satellite images, its own mean and std)
    gated: bool = False  # DINOv3: the weights need an accepted licence (a token, or a signed URL)


DINOV3_BASE_URL = "https://dl.fbaipublicfiles.com/dinov3"
DINOV3_LICENCE_URL = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"
# torch.hub names (dinov3/hub/backbones.py) → (dinokit size, hub repo word, file hash per dataset)
_DINOV3_VITS = {
    "vits16": ("s", "vits16", {"lvd1689m": "08c60483"}),
    "vits16plus": ("splus", "vits16plus", {"lvd1689m": "4057cbaa"}),
    "vitb16": ("b", "vitb16", {"lvd1689m": "73cec8be"}),
    "vitl16": ("l", "vitl16", {"lvd1689m": "8aa4cbdd", "sat493m": "eadcf0ff"}),
    "vitl16plus": ("lplus", "vitl16plus", {"lvd1689m": "46503df0"}),
    "vith16plus": ("hplus", "vith16plus", {"lvd1689m": "7c1da9a5"}),
    "vit7b16": ("7b", "vit7b16", {"lvd1689m": "a955f4ea", "sat493m": "a6675841"}),
}
_DINOV3_CONVNEXTS = {"tiny": "21b726bb", "small": "296db49d", "base": "801f2ba9", "large": "61fa432d"}
_TIMM_DINOV3 = {"s": "vit_small_patch16_dinov3", "splus": "vit_small_plus_patch16_dinov3", "b": "vit_base_patch16_dinov3",
                "l": "vit_large_patch16_dinov3", "hplus": "vit_huge_plus_patch16_dinov3", "7b": "vit_7b_patch16_dinov3"}


def dinov3_url(arch: str, dataset: str, hash_: str) -> str:
    """The official file of a DINOv3 backbone (`arch`: vits16, vitl16plus, convnext_tiny, …). The server wants
    the signed query string of the e-mail sent after accepting the licence; the file name is the cache's."""
    return f"{DINOV3_BASE_URL}/dinov3_{arch}/dinov3_{arch}_pretrain_{dataset}-{hash_}.pth"


def _dinov3_sources() -> dict[str, ModelSource]:
    table = {}
    for arch, (size, word, hashes) in _DINOV3_VITS.items():
        for dataset, hash_ in hashes.items():
            suffix = "" if dataset == "lvd1689m" else f"_{dataset}"
            common = dict(family="dinov3_vit", dataset=dataset, gated=True)
            table[f"dinov3_{arch}{suffix}"] = ModelSource(size, True, url=dinov3_url(arch, dataset, hash_), **common)
            repo = f"facebook/dinov3-{word}-pretrain-{dataset}"
            table[repo] = ModelSource(size, True, repo_id=repo, **common)
            if size in _TIMM_DINOV3:
                for variant in ("", "_qkvb"):
                    timm_name = f"{_TIMM_DINOV3[size]}{variant}.{dataset}"
                    if variant == "" or size != "7b":
                        table[f"timm/{timm_name}"] = ModelSource(size, True, repo_id=f"timm/{timm_name}", **common)
    for size, hash_ in _DINOV3_CONVNEXTS.items():
        common = dict(family="dinov3_convnext", gated=True)
        table[f"dinov3_convnext_{size}"] = ModelSource(size, False, url=dinov3_url(f"convnext_{size}", "lvd1689m", hash_),
                                                       **common)
        repo = f"facebook/dinov3-convnext-{size}-pretrain-lvd1689m"
        table[repo] = ModelSource(size, False, repo_id=repo, **common)
        table[f"timm/convnext_{size}.dinov3_lvd1689m"] = ModelSource(
            size, False, repo_id=f"timm/convnext_{size}.dinov3_lvd1689m", **common)
    return table


DINOTXT_NAME = "dinov2_vitl14_reg4_dinotxt_tet1280d20h24l"  # torch.hub's name of dino.txt
DINOV3_DINOTXT_NAME = "dinov3_vitl16_dinotxt_tet1280d20h24l"  # dinov3's torch.hub name (gated files)
DINOTXT_NAMES = (DINOTXT_NAME, "dinotxt", DINOV3_DINOTXT_NAME)  # with the DINOv2 one's short alias


def dinotxt_urls(name: str = DINOTXT_NAME) -> dict[str, str]:
    """The files dino.txt needs: DINOv2's ViT-L/14 reg4 backbone, vision head, text encoder and the BPE
    vocabulary; or DINOv3's ViT-L/16 backbone, one file holding the vision head and the text encoder, and
    the vocabulary."""
    if name == DINOV3_DINOTXT_NAME:
        return {"backbone": dinov3_url("vitl16", "lvd1689m", "8aa4cbdd"),
                "head_and_text": f"{DINOV3_BASE_URL}/dinov3_vitl16/dinov3_vitl16_dinotxt_vision_head_and_text_encoder"
                                 "-a442d8f5.pth",
                "vocab": f"{DINOV3_BASE_URL}/thirdparty/bpe_simple_vocab_16e6.txt.gz"}
    base = f"{OFFICIAL_BASE_URL}/dinov2_vitl14/{DINOTXT_NAME}"
    return {"backbone": official_url("l", True), "vision_head": f"{base}_vision_head.pth",
            "text_encoder": f"{base}_text_encoder.pth", "vocab": f"{OFFICIAL_BASE_URL}/thirdparty/bpe_simple_vocab_16e6.txt.gz"}


def official_head_url(size: str, registers: bool, layers: int) -> str:
    return official_url(size, registers, "linear_head" if layers == 1 else f"linear{layers}_head")


def official_url(size: str, registers: bool, kind: str = "pretrain") -> str:
    m = f"dinov2_vit{size}14"
    return f"{OFFICIAL_BASE_URL}/{m}/{m}{'_reg4' if registers else ''}_{kind}.pth"


def _build() -> dict[str, ModelSource]:
    table = {}
    for size, word in _SIZE_WORDS.items():
        for reg in (False, True):
            name = f"dinov2_vit{size}14{'_reg' if reg else ''}"
            table[name] = ModelSource(size, reg, url=official_url(size, reg))
            table[name + "_lc"] = ModelSource(size, reg, url=official_url(size, reg), linear_head=True)
        table[f"facebook/dinov2-{word}"] = ModelSource(size, False, repo_id=f"facebook/dinov2-{word}")
        table[f"facebook/dinov2-{word}-imagenet1k-1-layer"] = ModelSource(
            size, False, repo_id=f"facebook/dinov2-{word}-imagenet1k-1-layer")
        table[f"facebook/dinov2-with-registers-{word}"] = ModelSource(
            size, True, repo_id=f"facebook/dinov2-with-registers-{word}"
        )
        mm = f"vit-{word}-p14_dinov2-pre_3rdparty"
        table[mm] = ModelSource(
            size, False, url=f"{MMPRETRAIN_BASE_URL}/{mm}_20230426-{_MMPRETRAIN_HASHES[size]}.pth",
            interpolate_mode="hf",  # mmpretrain's resize_pos_embed: bicubic by size, no antialias
        )
    return table


MODEL_SOURCES: dict[str, ModelSource] = {**_build(), **_dinov3_sources()}


def lookup(name: str) -> ModelSource | None:
    return MODEL_SOURCES.get(name)


def available_models() -> list[str]:
    return sorted(MODEL_SOURCES)


DEPTH_DATASETS = {"nyu": 10.0, "kitti": 80.0}  # max depth in metres of the official DPT heads per dataset
SEGMENTATION_DATASETS = {"ade20k": 150, "voc2012": 21}  # classes of the official linear segmentation heads


def official_depth_head_url(size: str, dataset: str, kind: str) -> str:
    """kind: linear (1 block), linear4 or dpt; dataset: nyu or kitti."""
    return official_url(size, False, f"{dataset}_{kind}_head")


def official_segmentation_head_url(size: str, dataset: str, kind: str = "linear") -> str:
    """kind: linear (last block) or ms (four blocks, the multi-scale evaluation's head)."""
    return official_url(size, False, f"{dataset}_{kind}_head")


def parse_dense_name(name: str) -> dict | None:
    """`dinov2_vits14_nyu_dpt`, `dinov2_vitb14_kitti_linear4`, `dinov2_vits14_ade20k_linear`, and the torch.hub
    depther names `dinov2_vits14_dd` (DPT, NYU) / `dinov2_vits14_ld` (linear4, NYU) → what to load."""
    import re

    m = re.fullmatch(r"dinov2_vit([sblg])14_(dd|ld)", name)
    if m:
        return {"task": "depth", "size": m[1], "dataset": "nyu", "kind": "dpt" if m[2] == "dd" else "linear4"}
    m = re.fullmatch(r"dinov2_vit([sblg])14_(nyu|kitti)_(linear|linear4|dpt)", name)
    if m:
        return {"task": "depth", "size": m[1], "dataset": m[2], "kind": m[3]}
    m = re.fullmatch(r"dinov2_vit([sblg])14_(ade20k|voc2012)_(linear|ms)", name)
    if m:
        return {"task": "segmentation", "size": m[1], "dataset": m[2], "kind": m[3]}
    return None


DPT_REPO = "facebook/dpt-dinov2-{word}-{dataset}"  # transformers' DPTForDepthEstimation on a DINOv2 backbone


@dataclass(frozen=True)
class CatalogueEntry:
    """A name any command accepts, what kind of model it gives, and every published file it needs: URLs
    (cached by torch.hub) or `hf://owner/repo` (a Hugging Face repository, cached by huggingface_hub)."""

    name: str
    kind: str  # backbone, classifier, depth, segmentation or text (dino.txt)
    files: tuple[str, ...]

    @property
    def urls(self) -> list[str]:
        return [f for f in self.files if not f.startswith("hf://")]

    @property
    def repos(self) -> list[str]:
        return [f.removeprefix("hf://") for f in self.files if f.startswith("hf://")]


KINDS = ("backbone", "classifier", "depth", "segmentation", "text")


@functools.cache
def catalogue() -> tuple[CatalogueEntry, ...]:
    """Every published name, grouped by kind (the order of `KINDS`), with the files each one needs."""
    entries = []
    for name, s in MODEL_SOURCES.items():
        if s.repo_id:
            kind = "classifier" if "imagenet1k" in name else "backbone"
            entries.append(CatalogueEntry(name, kind, (f"hf://{s.repo_id}",)))
        elif s.linear_head:
            entries.append(CatalogueEntry(name, "classifier", (s.url, official_head_url(s.size, s.registers, 4))))
        else:
            entries.append(CatalogueEntry(name, "backbone", (s.url,)))
    for size, word in _SIZE_WORDS.items():
        backbone = official_url(size, False)
        for dataset in DEPTH_DATASETS:
            for kind in ("linear", "linear4", "dpt"):
                entries.append(CatalogueEntry(f"dinov2_vit{size}14_{dataset}_{kind}", "depth",
                                              (backbone, official_depth_head_url(size, dataset, kind))))
            repo = DPT_REPO.format(word=word, dataset=dataset)
            entries.append(CatalogueEntry(repo, "depth", (f"hf://{repo}",)))
        for alias, kind in (("ld", "linear4"), ("dd", "dpt")):
            entries.append(CatalogueEntry(f"dinov2_vit{size}14_{alias}", "depth",
                                          (backbone, official_depth_head_url(size, "nyu", kind))))
        for dataset in SEGMENTATION_DATASETS:
            for kind in ("linear", "ms"):
                entries.append(CatalogueEntry(f"dinov2_vit{size}14_{dataset}_{kind}", "segmentation",
                                              (backbone, official_segmentation_head_url(size, dataset, kind))))
    entries += [CatalogueEntry(name, "text", tuple(dinotxt_urls(name if name != "dinotxt" else DINOTXT_NAME).values()))
                for name in DINOTXT_NAMES]
    return tuple(sorted(entries, key=lambda e: (KINDS.index(e.kind), e.name)))


def catalogue_entry(name: str) -> CatalogueEntry | None:
    return next((e for e in catalogue() if e.name == name), None)


def close_names(name: str, n: int = 3, cutoff: float = 0.8) -> list[str]:
    """Published names a mistyped one is close to (`dinov2_vits41` → `dinov2_vits14`)."""
    import difflib

    return difflib.get_close_matches(name, [e.name for e in catalogue()], n=n, cutoff=cutoff)
