"""The paper's evaluation protocols on frozen features: k-NN, linear probe, logistic regression."""
import os
from pathlib import Path

from ..lazy import lazy_exports

_EXPORTS = {  # module → the names it gives the package, imported on first use
    ".features": ["FeatureSet", "folder_features", "parquet_features"],
    ".knn": ["accuracy", "knn_eval", "knn_predict"],
    ".linear": ["LEARNING_RATES", "linear_probe", "logistic_regression"],
    ".run": ["eval_knn", "eval_linear"],
    ".zeroshot": ["eval_zeroshot"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

# where features are cached between runs (here: the CLI shows it without loading torch)
DEFAULT_CACHE = Path(os.environ.get("DINOKIT_CACHE", Path.home() / ".cache" / "dinokit")) / "eval-features"

__all__ = ["DEFAULT_CACHE", "FeatureSet", "folder_features", "parquet_features", "knn_predict", "knn_eval", "accuracy",
           "linear_probe", "logistic_regression", "LEARNING_RATES", "eval_knn", "eval_linear",
           "eval_zeroshot"]
