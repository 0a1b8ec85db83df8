"""The one explicit table that maps published (timm) checkpoint keys onto our module names.

The published checkpoints (`WEIGHT_TAGS`, tags.py) use timm's module names; ours follow
the paper's figures. `KEY_TABLE` holds, per network, rows `(our module path, published module path)`,
and `convert_published` renames a whole published state dict through it. Its public names are importable
from `inceptionnet.weights`, the public entry point for weights (docs/weights.md, "The key table").
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from inceptionnet.weights.tags import WeightsError

# -- the key table ----------------------------------------------------------------------------------------------
# Rows are (our module path, published module path). A published key is renamed by its longest matching
# published module path; the rest of the key (".conv.weight", ".bn.running_var", ".bias", ...) is kept.
# Our ConvBN and timm's conv units both name their parts `conv` and `bn`.


def _block(ours: str, published: str, rows: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(f"{ours}.{o}", f"{published}.{p}") for o, p in rows]


# Inception-v3 blocks (timm keeps torchvision's branch names)
_V3_A = (
    ("branch0", "branch1x1"),
    ("branch1.0", "branch5x5_1"),
    ("branch1.1", "branch5x5_2"),
    ("branch2.0", "branch3x3dbl_1"),
    ("branch2.1", "branch3x3dbl_2"),
    ("branch2.2", "branch3x3dbl_3"),
    ("branch3.1", "branch_pool"),
)
_V3_B = (
    ("branch0", "branch1x1"),
    ("branch1.0", "branch7x7_1"),
    ("branch1.1", "branch7x7_2"),
    ("branch1.2", "branch7x7_3"),
    ("branch2.0", "branch7x7dbl_1"),
    ("branch2.1", "branch7x7dbl_2"),
    ("branch2.2", "branch7x7dbl_3"),
    ("branch2.3", "branch7x7dbl_4"),
    ("branch2.4", "branch7x7dbl_5"),
    ("branch3.1", "branch_pool"),
)
_V3_C = (
    ("branch0", "branch1x1"),
    ("branch1", "branch3x3_1"),
    ("branch1_1x3", "branch3x3_2a"),
    ("branch1_3x1", "branch3x3_2b"),
    ("branch2.0", "branch3x3dbl_1"),
    ("branch2.1", "branch3x3dbl_2"),
    ("branch2_1x3", "branch3x3dbl_3a"),
    ("branch2_3x1", "branch3x3dbl_3b"),
    ("branch3.1", "branch_pool"),
)
# Inception-v4's Inception-C: timm numbers the branch parts, we name them by kernel
_V4_C = (
    ("branch0", "branch0"),
    ("branch1", "branch1_0"),
    ("branch1_1x3", "branch1_1a"),
    ("branch1_3x1", "branch1_1b"),
    ("branch2.0", "branch2_0"),
    ("branch2.1", "branch2_1"),
    ("branch2.2", "branch2_2"),
    ("branch2_1x3", "branch2_3a"),
    ("branch2_3x1", "branch2_3b"),
    ("branch3.1", "branch3.1"),
)
# Inception-ResNet blocks: branches keep their names, the 1x1 up-projection is timm's `conv2d`
_IR_UP = (("up.conv", "conv2d"),)

KEY_TABLE: dict[str, tuple[tuple[str, str], ...]] = {
    "inception_v3": (
        ("stem.conv1a", "Conv2d_1a_3x3"),
        ("stem.conv2a", "Conv2d_2a_3x3"),
        ("stem.conv2b", "Conv2d_2b_3x3"),
        ("stem.conv3b", "Conv2d_3b_1x1"),
        ("stem.conv4a", "Conv2d_4a_3x3"),
        *_block("blocks_a.0", "Mixed_5b", _V3_A),
        *_block("blocks_a.1", "Mixed_5c", _V3_A),
        *_block("blocks_a.2", "Mixed_5d", _V3_A),
        ("reduction_a.branch0", "Mixed_6a.branch3x3"),
        ("reduction_a.branch1.0", "Mixed_6a.branch3x3dbl_1"),
        ("reduction_a.branch1.1", "Mixed_6a.branch3x3dbl_2"),
        ("reduction_a.branch1.2", "Mixed_6a.branch3x3dbl_3"),
        *_block("blocks_b.0", "Mixed_6b", _V3_B),
        *_block("blocks_b.1", "Mixed_6c", _V3_B),
        *_block("blocks_b.2", "Mixed_6d", _V3_B),
        *_block("blocks_b.3", "Mixed_6e", _V3_B),
        ("reduction_b.branch0.0", "Mixed_7a.branch3x3_1"),
        ("reduction_b.branch0.1", "Mixed_7a.branch3x3_2"),
        ("reduction_b.branch1.0", "Mixed_7a.branch7x7x3_1"),
        ("reduction_b.branch1.1", "Mixed_7a.branch7x7x3_2"),
        ("reduction_b.branch1.2", "Mixed_7a.branch7x7x3_3"),
        ("reduction_b.branch1.3", "Mixed_7a.branch7x7x3_4"),
        *_block("blocks_c.0", "Mixed_7b", _V3_C),
        *_block("blocks_c.1", "Mixed_7c", _V3_C),
        ("aux", "AuxLogits"),  # conv0, conv1, fc: same names (torchvision weights only)
        ("head.fc", "fc"),
    ),
    "inception_v4": (
        ("stem.conv1a", "features.0"),
        ("stem.conv2a", "features.1"),
        ("stem.conv2b", "features.2"),
        ("stem.mixed_3a_conv", "features.3.conv"),
        ("stem.mixed_4a_branch0", "features.4.branch0"),
        ("stem.mixed_4a_branch1", "features.4.branch1"),
        ("stem.mixed_5a_conv", "features.5.conv"),
        *[(f"blocks_a.{i}", f"features.{6 + i}") for i in range(4)],  # Inception-A x 4
        ("reduction_a", "features.10"),
        *[(f"blocks_b.{i}", f"features.{11 + i}") for i in range(7)],  # Inception-B x 7
        ("reduction_b", "features.18"),
        *[row for i in range(3) for row in _block(f"blocks_c.{i}", f"features.{19 + i}", _V4_C)],  # Inception-C x 3
        ("head.fc", "last_linear"),
    ),
    "inception_resnet_v2": (
        ("stem.conv1a", "conv2d_1a"),
        ("stem.conv2a", "conv2d_2a"),
        ("stem.conv2b", "conv2d_2b"),
        ("stem.conv3b", "conv2d_3b"),
        ("stem.conv4a", "conv2d_4a"),
        ("stem.mixed_5b", "mixed_5b"),
        *[
            row
            for i in range(10)
            for row in (*_block(f"blocks_a.{i}", f"repeat.{i}", _IR_UP), (f"blocks_a.{i}", f"repeat.{i}"))
        ],
        ("reduction_a", "mixed_6a"),
        *[
            row
            for i in range(20)
            for row in (*_block(f"blocks_b.{i}", f"repeat_1.{i}", _IR_UP), (f"blocks_b.{i}", f"repeat_1.{i}"))
        ],
        ("reduction_b", "mixed_7a"),
        *[
            row
            for i in range(9)
            for row in (*_block(f"blocks_c.{i}", f"repeat_2.{i}", _IR_UP), (f"blocks_c.{i}", f"repeat_2.{i}"))
        ],
        ("blocks_c.9.up.conv", "block8.conv2d"),  # the final, linear Inception-ResNet-C
        ("blocks_c.9", "block8"),
        ("conv_7b", "conv2d_7b"),
        ("head.fc", "classif"),
    ),
}
# The key of each network's first convolution in the published layout (recognises a file's layout).
PUBLISHED_FIRST_CONV = {
    "inception_v3": "Conv2d_1a_3x3.conv.weight",
    "inception_v4": "features.0.conv.weight",
    "inception_resnet_v2": "conv2d_1a.conv.weight",
}


def map_published_key(model: str, key: str) -> str:
    """Rename one published (timm) state-dict key to ours through `KEY_TABLE`; KeyError if no row covers it."""
    rows = _published_to_ours(model)
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # longest module path first
        prefix = ".".join(parts[:cut])
        if prefix in rows:
            return f"{rows[prefix]}.{'.'.join(parts[cut:])}"
    raise KeyError(f"no row of KEY_TABLE[{model!r}] covers the published key {key!r}")


_ROWS_CACHE: dict[str, dict[str, str]] = {}


def _published_to_ours(model: str) -> dict[str, str]:
    if model not in _ROWS_CACHE:
        rows = {published: ours for ours, published in KEY_TABLE[model]}
        if len(rows) != len(KEY_TABLE[model]):
            raise AssertionError(f"KEY_TABLE[{model!r}] maps one published module twice")
        _ROWS_CACHE[model] = rows
    return _ROWS_CACHE[model]


def convert_published(model: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A published (timm-layout) state dict renamed to our module names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = map_published_key(model, key)
        if new in out:
            raise WeightsError(f"two published keys map onto {new}; the file is not a {model} checkpoint")
        out[new] = value
    return out


def published_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which network's published (timm) layout a state dict has, or None."""
    for model, key in PUBLISHED_FIRST_CONV.items():
        if key in state:
            return model
    return None
