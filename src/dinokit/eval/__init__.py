"""The paper's evaluation protocols on frozen features: k-NN, linear probe, logistic regression."""
from .features import FeatureSet, folder_features, parquet_features
from .knn import accuracy, knn_eval, knn_predict
from .linear import LEARNING_RATES, linear_probe, logistic_regression
from .run import eval_knn, eval_linear

__all__ = ["FeatureSet", "folder_features", "parquet_features", "knn_predict", "knn_eval", "accuracy",
           "linear_probe", "logistic_regression", "LEARNING_RATES", "eval_knn", "eval_linear"]
