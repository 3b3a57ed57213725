"""Evaluation of frozen features: weighted k-NN (no trained parameters) and
the small linear probe of the objectives study."""
from .knn import (DINO_K, DINO_TEMPERATURE, extract_features, knn_accuracy,
                  weighted_knn_predict)

__all__ = [
    'DINO_K', 'DINO_TEMPERATURE', 'extract_features', 'knn_accuracy',
    'weighted_knn_predict'
]
