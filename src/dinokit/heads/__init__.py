"""What sits on the ViT: classification heads and feature maps for dense heads."""
from .backbone import BackboneOutput, FeatureBackbone
from .classification import (
    ImageClassifier,
    ImageClassifierOutput,
    classification_loss,
    imagenet_id2label,
    imagenet_labels,
    linear_head_input,
)

__all__ = ["FeatureBackbone", "BackboneOutput", "ImageClassifier", "ImageClassifierOutput", "classification_loss",
           "imagenet_labels", "imagenet_id2label", "linear_head_input"]
