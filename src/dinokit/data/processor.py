"""`Dinov2ImageProcessor`: the hub's `preprocessor_config.json` (a transformers `BitImageProcessor`), with
the numerics of transformers' PIL backend, so pixel values equal `AutoImageProcessor`'s.

PIL path: convert("RGB") → PIL bicubic resize of the shortest edge on uint8 (long side
`int(256 * long / short)`) → centre crop at `((H - 224) // 2, (W - 224) // 2)` → ×1/255 in float64, then
float32 → (x − mean) / std in float32.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..io import read_json
from .images import check_resize, load_image, to_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAT493M_MEAN = (0.430, 0.411, 0.296)  # DINOv3's satellite weights (dinov3/data/transforms.py)
SAT493M_STD = (0.213, 0.156, 0.143)
CONFIG_NAME = "preprocessor_config.json"


class BatchFeature(dict):
    """`out["pixel_values"]`, `out.pixel_values`, `.keys()` and `.to(device or dtype)`, as transformers'
    BatchFeature."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, *args, **kwargs) -> BatchFeature:
        """Tensors moved or cast as `Tensor.to` does; a dtype applies to floating-point tensors only."""
        def move(v):
            if not isinstance(v, torch.Tensor):
                return v
            if not v.is_floating_point():  # transformers casts only floating-point values
                kw = {k: d for k, d in kwargs.items() if k != "dtype"}
                return v.to(*[a for a in args if not isinstance(a, torch.dtype)], **kw)
            return v.to(*args, **kwargs)

        return BatchFeature({k: move(v) for k, v in self.items()})


OPTIONS = ("do_convert_rgb", "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale",
           "rescale_factor", "do_normalize", "image_mean", "image_std", "size_divisor", "alpha_background")


class Dinov2ImageProcessor:
    def __init__(
        self,
        do_convert_rgb: bool = True,
        do_resize: bool = True,
        size: int | dict | None = None,
        resample: int = Image.BICUBIC,
        do_center_crop: bool = True,
        crop_size: int | dict | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        size_divisor: int | None = None,
        alpha_background: tuple[int, int, int] | None = None,
        **unused,
    ):
        """Defaults are the hub's values (256 / 224 / ImageNet), not transformers' `BitImageProcessor`
        class defaults. `size_divisor=14` (dinokit) resizes each side to the nearest multiple of 14 after the
        shortest-edge resize, for full-image dense features; use it with `do_center_crop=False`.
        `alpha_background=(255, 255, 255)` composites transparent images on white as transformers 5.x does;
        the default (None) is `convert("RGB")`, as the official pipeline and transformers 4.x."""
        self.do_convert_rgb = do_convert_rgb
        self.do_resize = do_resize
        self.size = {"shortest_edge": size} if isinstance(size, int) else dict(size or {"shortest_edge": 256})
        self.resample = int(resample)
        self.do_center_crop = do_center_crop
        self.crop_size = ({"height": crop_size, "width": crop_size} if isinstance(crop_size, int)
                          else dict(crop_size or {"height": 224, "width": 224}))
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.size_divisor = size_divisor
        self.alpha_background = tuple(alpha_background) if alpha_background is not None else None
        self.extra = {k: v for k, v in unused.items() if k not in ("image_processor_type", "processor_class")}

    # --- the call --------------------------------------------------------------------------------------
    def __call__(self, images, return_tensors: str | None = "pt", data_format: str = "channels_first",
                 input_data_format: str | None = None, **options) -> BatchFeature:
        """Images → pixel values. Every constructor option (`OPTIONS`) can be given for this call alone, as
        in transformers. `return_tensors`: "pt" (dinokit's default), "np" (a stacked array) or None (a list
        of arrays, transformers' default). `data_format` "channels_last" gives HWC."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {', '.join(map(repr, unknown))}; "
                            f"its options are {', '.join(OPTIONS)}")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        if data_format not in ("channels_first", "channels_last"):
            raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got {data_format!r}")
        proc = type(self)(**{**self.to_options(), **options}) if options else self
        if not isinstance(images, (list, tuple)):
            images = [images]
        arrays = [proc.preprocess_one(im, input_data_format) for im in images]
        if data_format == "channels_last":
            arrays = [np.ascontiguousarray(a.transpose(1, 2, 0)) for a in arrays]
        if return_tensors is None:
            return BatchFeature(pixel_values=arrays)
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"images of different output sizes {sorted(shapes)} cannot be batched; crop them "
                             "(do_center_crop=True), process them one at a time, or use return_tensors=None")
        batch = np.stack(arrays)
        return BatchFeature(pixel_values=torch.from_numpy(batch) if return_tensors == "pt" else batch)

    def to_options(self) -> dict:
        return {name: getattr(self, name) for name in OPTIONS}

    preprocess = __call__

    def preprocess_one(self, image, input_data_format: str | None = None) -> np.ndarray:
        """One image → float32 CHW array. A float array or tensor in [0, 1] is taken as transformers takes
        it: scaled to 8 bits for the resize, back to [0, 1] after it, and then — with `do_rescale` — rescaled
        once more (transformers warns that it is already scaled; pass do_rescale=False for such input)."""
        if _is_unit_float(image):
            unit = _as_hwc(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image,
                                      dtype=np.float32), input_data_format)
            if self.do_rescale:
                warnings.warn("the images are floats in [0, 1] and do_rescale is set: they are rescaled again, as "
                              "transformers does (pass do_rescale=False if they are already scaled)", stacklevel=2)
            if not self.do_resize:
                return self._finish(np.ascontiguousarray(unit.transpose(2, 0, 1)))
            img = Image.fromarray(np.squeeze((unit * 255).astype(np.uint8), -1) if unit.shape[-1] == 1
                                  else (unit * 255).astype(np.uint8))
        else:
            unit = None
            img = self._to_pil(image, input_data_format)
        if self.do_convert_rgb and img.mode != "RGB":
            has_alpha = "A" in img.getbands() or img.info.get("transparency") is not None
            if self.alpha_background is not None and has_alpha:
                img = to_rgb(img, background=self.alpha_background)
            else:
                img = img.convert("RGB")
        if self.do_resize:
            target = self.resize_output_size(img.height, img.width)
            check_resize(img.height, img.width, *target)
            img = img.resize(target[::-1], resample=self.resample)
        if self.size_divisor:
            d = self.size_divisor
            target = (max(d, round(img.height / d) * d), max(d, round(img.width / d) * d))
            if target != (img.height, img.width):
                check_resize(img.height, img.width, *target)
                img = img.resize(target[::-1], resample=self.resample)
        arr = np.asarray(img)
        arr = arr[..., None] if arr.ndim == 2 else arr
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if unit is not None:  # back to [0, 1], as transformers' resize returns it
            arr = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
        return self._finish(arr)

    def _finish(self, arr: np.ndarray) -> np.ndarray:
        """Centre crop, rescale, normalise: the steps after the resize."""
        if self.do_center_crop:
            arr = self._center_crop(arr)
        if self.do_rescale:
            arr = (arr.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            arr = arr.astype(np.float32, copy=False)
            mean = np.array(self.image_mean, dtype=np.float32)[:, None, None]
            std = np.array(self.image_std, dtype=np.float32)[:, None, None]
            arr = (arr - mean) / std
        return arr.astype(np.float32, copy=False)

    def resize_output_size(self, height: int, width: int) -> tuple[int, int]:
        if "shortest_edge" in self.size:
            return shortest_edge_size(height, width, self.size["shortest_edge"])
        return self.size["height"], self.size["width"]

    def _center_crop(self, arr: np.ndarray) -> np.ndarray:
        """transformers' centre crop: floored offsets, zero padding when the image is smaller."""
        ch, cw = self.crop_size["height"], self.crop_size["width"]
        _, h, w = arr.shape
        if h < ch or w < cw:
            padded = np.zeros((arr.shape[0], max(h, ch), max(w, cw)), dtype=arr.dtype)
            top_pad, left_pad = -(-(padded.shape[1] - h) // 2), -(-(padded.shape[2] - w) // 2)
            padded[:, top_pad:top_pad + h, left_pad:left_pad + w] = arr
            arr, h, w = padded, padded.shape[1], padded.shape[2]
        top, left = (h - ch) // 2, (w - cw) // 2
        return arr[:, top:top + ch, left:left + cw]

    def _to_pil(self, image, input_data_format: str | None = None) -> Image.Image:
        """PIL as is; paths through the robust loader; arrays and tensors (HWC or CHW, uint8 or integral
        floats) to PIL."""
        if isinstance(image, Image.Image):
            return image
        if isinstance(image, (str, os.PathLike)):
            return load_image(image, background=self.alpha_background)
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
        if not isinstance(image, np.ndarray):
            raise TypeError(f"unsupported image type {type(image).__name__}: expected PIL, numpy, torch or a path")
        image = _as_hwc(image, input_data_format)
        if image.shape[-1] == 1:
            image = image[..., 0]
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image.astype(np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(image)

    # --- the fast and the official tensor pipelines -----------------------------------------------------
    def tensor_transform(self):
        """The same steps with torchvision.transforms.v2 on uint8 CHW tensors (batched, for throughput).
        It differs from the PIL path by about one grey level (different bicubic kernels) and by one pixel
        of crop offset on odd margins (torchvision rounds where transformers floors)."""
        from torchvision.transforms import InterpolationMode, v2

        steps = []
        if self.do_resize:
            size = self.size.get("shortest_edge") or (self.size["height"], self.size["width"])
            steps.append(ResizeLimit(size))
            steps.append(v2.Resize(size, interpolation=InterpolationMode.BICUBIC, antialias=True))
        if self.do_center_crop:
            steps.append(v2.CenterCrop((self.crop_size["height"], self.crop_size["width"])))
        steps.append(v2.ToDtype(torch.float32, scale=self.do_rescale))
        if self.do_normalize:
            steps.append(v2.Normalize(self.image_mean, self.image_std))
        return v2.Compose(steps)

    # --- preprocessor_config.json -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dict(
            do_convert_rgb=self.do_convert_rgb, do_resize=self.do_resize, size=self.size, resample=self.resample,
            do_center_crop=self.do_center_crop, crop_size=self.crop_size, do_rescale=self.do_rescale,
            rescale_factor=self.rescale_factor, do_normalize=self.do_normalize, image_mean=self.image_mean,
            image_std=self.image_std, image_processor_type="BitImageProcessor", **self.extra,
        )
        if self.size_divisor:
            d["size_divisor"] = self.size_divisor
        if self.alpha_background is not None:
            d["alpha_background"] = list(self.alpha_background)
        return d

    def save_pretrained(self, save_directory) -> Path:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def from_json_file(cls, path) -> Dinov2ImageProcessor:
        return cls(**read_json(path))

    @classmethod
    def from_pretrained(cls, name_or_path, **overrides) -> Dinov2ImageProcessor:
        """A folder or file with preprocessor_config.json, a Hugging Face repo id, or a torch.hub/mmpretrain
        name (which ship no such file: the hub defaults, which are the official evaluation values). Keywords:
        the processor's own settings, the hub's download options (revision, cache_dir, token, …) and the
        transformers options that change nothing here (use_fast, backend); anything else is a TypeError."""
        from ..weights.download import HUB_OPTIONS

        unknown = sorted(set(overrides) - _settings(cls) - set(HUB_OPTIONS) - _TRANSFORMERS_NO_OPS)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained() got unexpected keyword argument(s) "
                            f"{', '.join(map(repr, unknown))} (neither a processor setting nor a loading option)")
        hub_options = {k: overrides.pop(k) for k in HUB_OPTIONS if k in overrides}
        for key in _TRANSFORMERS_NO_OPS:
            overrides.pop(key, None)
        path = Path(name_or_path)
        if path.is_dir() and (path / CONFIG_NAME).is_file():
            path = path / CONFIG_NAME
        if path.is_file() and path.suffix == ".json":
            return cls._from_config(read_json(path), overrides)
        name = str(name_or_path)
        if name.count("/") == 1 and not path.exists():
            from ..weights.download import hub_file

            found = hub_file(name, CONFIG_NAME, required=False, **hub_options)
            if found is not None:
                return cls._from_config(read_json(found), overrides)
        return cls(**overrides)

    @classmethod
    def _from_config(cls, config: dict, overrides: dict) -> Dinov2ImageProcessor:
        """The class the file names (a DINOv3 processor from `Dinov2ImageProcessor.from_pretrained` too, as
        transformers' Auto class would give)."""
        target = _processor_class(config) if cls is Dinov2ImageProcessor else cls
        return target(**{**config, **overrides})

    def __repr__(self):
        return f"Dinov2ImageProcessor({json.dumps(self.to_dict(), sort_keys=True)})"


_TRANSFORMERS_NO_OPS = {"use_fast", "backend", "trust_remote_code", "return_unused_kwargs"}


def shortest_edge_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) after resizing the shorter side to `short_side`, as transformers and torchvision
    compute it (the longer side truncated)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = short_side, int(short_side * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


class ResizeLimit(torch.nn.Module):
    """The step before a resize in every torchvision pipeline: refuses an image whose resized size would
    exceed `MAX_RESIZED_PIXELS` (`ImageLoadError`) before the resize allocates it."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, img):
        height, width = (img.height, img.width) if isinstance(img, Image.Image) else tuple(img.shape[-2:])
        target = shortest_edge_size(height, width, self.size) if isinstance(self.size, int) else tuple(self.size)
        check_resize(height, width, *target)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def _settings(cls) -> set[str]:
    import inspect

    return {name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind is not p.VAR_KEYWORD}


def _is_unit_float(image) -> bool:
    if isinstance(image, torch.Tensor):
        return image.is_floating_point() and image.numel() > 0 and 0 <= image.min() and image.max() <= 1
    return (isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating) and image.size > 0
            and 0 <= image.min() and image.max() <= 1)


def _as_hwc(image: np.ndarray, input_data_format: str | None) -> np.ndarray:
    """HWC (a grey image gets a channel axis); CHW is recognised by its first axis, or told."""
    if image.ndim == 2:
        return image[..., None]
    if input_data_format == "channels_first" or (
            input_data_format is None and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4)):
        return image.transpose(1, 2, 0)
    return image


class DINOv3ImageProcessor(Dinov2ImageProcessor):
    """transformers' `DINOv3ViTImageProcessorFast` (the processor every DINOv3 repository names), bit-exact:
    uint8 → ×1/255 in float32 → torchvision resize to 224 × 224 (bilinear, antialiased, on floats: no crop, the
    aspect ratio is not kept) → normalise. It has no PIL path in transformers; this is its torchvision path."""

    def __init__(self, size: int | dict | None = None, resample: int = Image.BILINEAR, do_center_crop: bool = False,
                 image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, **options):
        size = {"height": size, "width": size} if isinstance(size, int) else dict(size or {"height": 224, "width": 224})
        options = {k: v for k, v in options.items() if v is not None or k not in ("crop_size", "do_convert_rgb")}
        super().__init__(size=size, resample=resample, do_center_crop=do_center_crop, image_mean=image_mean,
                         image_std=image_std, **options)

    def preprocess_one(self, image, input_data_format: str | None = None) -> np.ndarray:
        from torchvision.transforms.v2 import functional as tvF

        if _is_unit_float(image):
            return super().preprocess_one(image, input_data_format)
        img = self._to_pil(image, input_data_format)
        if self.do_convert_rgb and img.mode != "RGB":
            img = to_rgb(img, background=self.alpha_background) if self.alpha_background else img.convert("RGB")
        x = torch.from_numpy(np.array(img)[..., None] if img.mode == "L" else np.array(img)).permute(2, 0, 1)
        if self.do_rescale:
            x = x * self.rescale_factor
        if self.do_resize:
            target = self.resize_output_size(img.height, img.width)
            check_resize(img.height, img.width, *target)
            x = tvF.resize(x, list(target), interpolation=_TV_INTERPOLATION[self.resample], antialias=True)
        if self.do_center_crop:
            x = tvF.center_crop(x, [self.crop_size["height"], self.crop_size["width"]])
        if self.do_normalize:
            x = tvF.normalize(x.float(), self.image_mean, self.image_std)
        return x.float().numpy()

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["image_processor_type"] = "DINOv3ViTImageProcessorFast"
        return d

    def __repr__(self):
        return f"DINOv3ImageProcessor({json.dumps(self.to_dict(), sort_keys=True)})"


_TV_INTERPOLATION = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _processor_class(config: dict) -> type:
    return DINOv3ImageProcessor if "DINOv3" in str(config.get("image_processor_type", "")) else Dinov2ImageProcessor


class AutoImageProcessor:
    """`AutoImageProcessor.from_pretrained(name_or_path)`, as in transformers: the class the repository's
    preprocessor_config.json names (DINOv2's `BitImageProcessor` or DINOv3's processor); for a name that ships
    none, its family's defaults."""

    @staticmethod
    def from_pretrained(name_or_path, **overrides) -> Dinov2ImageProcessor:
        from ..weights.names import lookup

        source = lookup(str(name_or_path))
        if source is not None and source.family != "dinov2" and not source.repo_id:
            return dinov3_processor(source.dataset, **overrides)
        return Dinov2ImageProcessor.from_pretrained(name_or_path, **overrides)


def dinov3_processor(dataset: str = "lvd1689m", **overrides) -> DINOv3ImageProcessor:
    """The processor of DINOv3 weights without a preprocessor_config.json: ImageNet's mean and std, or the
    satellite ones for SAT-493M."""
    stats = dict(image_mean=SAT493M_MEAN, image_std=SAT493M_STD) if dataset == "sat493m" else {}
    return DINOv3ImageProcessor(**{**stats, **overrides})


def official_eval_transform(resize: int = 256, crop: int = 224):
    """The official evaluation transform (torchvision Resize bicubic + CenterCrop + ToTensor + Normalize on
    PIL images). Its crop offset is rounded, not floored: see the docs on where it differs from transformers."""
    from torchvision import transforms

    return transforms.Compose([
        ResizeLimit(resize),
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class OfficialEvalProcessor:
    """`official_eval_transform` with the processor's calling convention (image or images →
    `{"pixel_values": [N, 3, crop, crop]}`, `crop_size`, `do_center_crop`): the preprocessing of the models
    whose reference is the official code, not transformers (dino.txt's notebook)."""

    do_center_crop = True

    def __init__(self, crop: int = 224):
        self.crop_size = {"height": crop, "width": crop}
        self.transform = official_eval_transform(crop * 256 // 224, crop)

    def __call__(self, images, return_tensors=None) -> BatchFeature:
        import torch

        images = images if isinstance(images, (list, tuple)) else [images]
        return BatchFeature({"pixel_values": torch.stack([self.transform(image) for image in images])})

    def __repr__(self) -> str:
        return f"OfficialEvalProcessor({self.transform})"


def dense_transform(short_side: int | None = 448):
    """Dense tasks see the whole image (no crop): resized so its shorter side is `short_side` (None keeps the
    size), as a normalised tensor; the model pads it to a multiple of the patch size."""
    from torchvision import transforms

    steps = [ResizeLimit(short_side),
             transforms.Resize(short_side, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True)
             ] if short_side else []
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
