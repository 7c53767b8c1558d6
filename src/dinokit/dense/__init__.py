"""Dense prediction on DINOv2 patch features: depth (official linear and DPT heads, transformers' DPT),
semantic segmentation (official linear heads, and heads trained on your masks), dense correspondences."""
from .models import DepthModel, SegmentationModel, load_depth_model, load_segmentation_model
from .predict import Matches, depth, match, segment, write_depth, write_match, write_segmentation
from .train_seg import SegTrainResult, train_segmentation

__all__ = ["DepthModel", "SegmentationModel", "load_depth_model", "load_segmentation_model", "depth", "segment",
           "match", "Matches", "write_depth", "write_segmentation", "write_match", "train_segmentation",
           "SegTrainResult"]
