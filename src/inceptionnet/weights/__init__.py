"""Published ImageNet weights, our own weight files, model folders and training runs: finding, reading, fitting.

The published checkpoints are timm's conversions of the TF-slim, torchvision and Gluon releases,
stored on the Hugging Face hub as `timm/<model>.<tag>/model.safetensors`: their catalogue is
tags.py and the mapping of their keys onto ours keys.py. Reading and saving weight files is
files.py, the card our files carry in their headers record.py, model folders (config.json +
model.safetensors) artifact.py, the training checkpoint format (entries, reader) checkpoint.py,
run folders (the name of each file of a run, reading them) runfolder.py, model folders on the hub
hub.py; resolve.py turns any weights argument into a state dict in our layout, and fitting.py fits
it onto a network; timm_layout.py writes a network the other way, in timm's layout, for timm.
This package is the public entry point for weights (docs/weights.md).
"""

from inceptionnet.weights.artifact import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_model_folder,
    read_model_folder,
    save_model_folder,
)
from inceptionnet.weights.files import (
    FIRST_CONV,
    LOCAL_SUFFIXES,
    download,
    is_local_path,
    read_state_dict,
    save_weights,
)
from inceptionnet.weights.fitting import CLASSIFIERS, LoadReport, adapt_first_conv, load_state_dict_into
from inceptionnet.weights.hub import HUB_PREFIX, download_model_folder
from inceptionnet.weights.keys import KEY_TABLE, PUBLISHED_FIRST_CONV, convert_published, map_published_key
from inceptionnet.weights.record import FORMAT_NAME
from inceptionnet.weights.resolve import ResolvedWeights, load_weights, resolve_weights
from inceptionnet.weights.runfolder import RunFolder, checkpoint_file, read_checkpoint, run_weights
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
from inceptionnet.weights.timm_layout import (
    TIMM_ARCHITECTURES,
    save_timm_folder,
    timm_architecture,
    timm_config,
    timm_state_dict,
)

__all__ = [
    "CLASSIFIERS",
    "CONFIG_FILE",
    "DEFAULT_TAGS",
    "FIRST_CONV",
    "FORMAT_NAME",
    "HUB_PREFIX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KEY_TABLE",
    "LOCAL_SUFFIXES",
    "PUBLISHED_FIRST_CONV",
    "TIMM_ARCHITECTURES",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_FILE",
    "WEIGHT_TAGS",
    "LoadReport",
    "ResolvedWeights",
    "RunFolder",
    "WeightTag",
    "WeightsError",
    "adapt_first_conv",
    "checkpoint_file",
    "convert_published",
    "download",
    "download_model_folder",
    "get_weight_tag",
    "is_local_path",
    "is_model_folder",
    "list_weights",
    "load_state_dict_into",
    "load_weights",
    "map_published_key",
    "read_checkpoint",
    "read_model_folder",
    "read_state_dict",
    "resolve_weights",
    "run_weights",
    "save_model_folder",
    "save_timm_folder",
    "save_weights",
    "timm_architecture",
    "timm_config",
    "timm_state_dict",
    "weights_dir",
]
