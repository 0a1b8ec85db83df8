"""inceptionnet: the networks of "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning" (Szegedy, Ioffe, Vanhoucke, Alemi, 2016) in PyTorch."""

from inceptionnet._version import __version__
from inceptionnet.card import ModelCard
from inceptionnet.factory import create_model
from inceptionnet.models import FeatureExtractor, FeatureInfo, InceptionNetwork, Preprocessing, list_models
from inceptionnet.retrieval import embed

__all__ = [
    "FeatureExtractor",
    "FeatureInfo",
    "InceptionNetwork",
    "ModelCard",
    "Preprocessing",
    "__version__",
    "create_model",
    "embed",
    "list_models",
]
