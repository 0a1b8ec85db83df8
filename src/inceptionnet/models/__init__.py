"""The networks of the paper: Inception-v3, Inception-v4, Inception-ResNet-v1 and -v2."""

from inceptionnet.models.base import FeatureInfo, InceptionNetwork, Preprocessing
from inceptionnet.models.features import FeatureExtractor
from inceptionnet.models.registry import MODELS, ModelEntry, get_entry, list_models

__all__ = [
    "MODELS",
    "FeatureExtractor",
    "FeatureInfo",
    "InceptionNetwork",
    "ModelEntry",
    "Preprocessing",
    "get_entry",
    "list_models",
]
