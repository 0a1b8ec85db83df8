"""inceptionnet: the networks of "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning" (Szegedy, Ioffe, Vanhoucke, Alemi, 2016) in PyTorch."""

from inceptionnet.models import (
    FeatureExtractor,
    FeatureInfo,
    InceptionNetwork,
    Preprocessing,
    create_model,
    list_models,
)

__version__ = "0.1.0"

__all__ = [
    "FeatureExtractor",
    "FeatureInfo",
    "InceptionNetwork",
    "Preprocessing",
    "__version__",
    "create_model",
    "list_models",
]
