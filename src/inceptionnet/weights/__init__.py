"""Published ImageNet weights and our own checkpoints: catalogue, key table, files, fitting.

The published checkpoints are timm's conversions of the TF-slim, torchvision and Gluon releases,
stored on the Hugging Face hub as `timm/<model>.<tag>/model.safetensors`: their catalogue is
tags.py, the mapping of their keys onto ours keys.py, reading and saving files files.py, and
fitting a state dict onto a network fitting.py. This package is the public entry point for weights
(docs/weights.md).
"""

from inceptionnet.weights.files import (
    FIRST_CONV,
    FORMAT_NAME,
    LOCAL_SUFFIXES,
    download,
    is_local_path,
    preprocessing_from_dict,
    read_state_dict,
    save_weights,
)
from inceptionnet.weights.fitting import (
    CLASSIFIERS,
    LoadReport,
    ResolvedWeights,
    adapt_first_conv,
    load_state_dict_into,
    load_weights,
    resolve_weights,
)
from inceptionnet.weights.keys import KEY_TABLE, PUBLISHED_FIRST_CONV, convert_published, map_published_key
from inceptionnet.weights.tags import (
    DEFAULT_TAGS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHT_TAGS,
    WEIGHTS_DIR_ENV,
    WeightsError,
    WeightTag,
    get_weight_tag,
    list_weights,
    weights_dir,
)

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_TAGS",
    "FIRST_CONV",
    "FORMAT_NAME",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KEY_TABLE",
    "LOCAL_SUFFIXES",
    "PUBLISHED_FIRST_CONV",
    "WEIGHTS_DIR_ENV",
    "WEIGHT_TAGS",
    "LoadReport",
    "ResolvedWeights",
    "WeightTag",
    "WeightsError",
    "adapt_first_conv",
    "convert_published",
    "download",
    "get_weight_tag",
    "is_local_path",
    "list_weights",
    "load_state_dict_into",
    "load_weights",
    "map_published_key",
    "preprocessing_from_dict",
    "read_state_dict",
    "resolve_weights",
    "save_weights",
    "weights_dir",
]
