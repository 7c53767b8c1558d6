"""Images in: robust loading, the reference processor, and a dataset that survives bad files."""
from .dataset import ImageBatch, ImageFiles, LoadedImage, collate_images
from .images import (
    IMAGE_EXTENSIONS,
    MAX_RESIZED_PIXELS,
    ImageLoadError,
    ImageScan,
    check_resize,
    decode_image,
    list_images,
    load_image,
    scan_images,
    to_rgb,
)
from .processor import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AutoImageProcessor,
    BatchFeature,
    Dinov2ImageProcessor,
    DINOv3ImageProcessor,
    OfficialEvalProcessor,
    dense_transform,
    official_eval_transform,
)

__all__ = [
    "ImageFiles", "LoadedImage", "ImageBatch", "collate_images", "ImageLoadError", "load_image", "decode_image", "list_images",
    "scan_images", "ImageScan", "check_resize", "MAX_RESIZED_PIXELS",
    "to_rgb", "IMAGE_EXTENSIONS", "Dinov2ImageProcessor", "DINOv3ImageProcessor", "AutoImageProcessor", "BatchFeature",
    "OfficialEvalProcessor",
    "official_eval_transform", "dense_transform", "IMAGENET_MEAN", "IMAGENET_STD",
]
