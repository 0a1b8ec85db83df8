"""The network that ends at the pooled features, on the engine its classifier runs on: what `embed` and `similar` run.

`feature_network(net)` takes a network made for inference (`inference_network`, `open_for_inference`: torch,
ONNX Runtime, OpenVINO, an int8 folder) and returns a module of the same card, engine, precision and threads
whose forward gives the pooled feature vector after the last block (N, num_features), float32:

- torch: the same fused network (no copy of its weights), its `forward_features` then its pooled head;
- ONNX Runtime, OpenVINO and int8: the network's ONNX file cut before its classifier (`export.features`),
  kept beside the engine cache's export (made once per weights, as predict's) or, for a file outside the
  cache (an int8 folder, an uncached network), in a temporary folder for the network's lifetime.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

import torch

from inceptionnet.export.features import cut_at_features, feature_width, features_path
from inceptionnet.export.onnxcache import cache_folder
from inceptionnet.export.runtimes import DescribedNetwork, EngineNetwork, onnx_runner
from inceptionnet.inference.engines import Log, TorchNetwork


class TorchFeatures(DescribedNetwork):
    """The pooled features of a TorchNetwork, sharing its fused network and precision."""

    def __init__(self, net: TorchNetwork) -> None:
        super().__init__(net.card)
        self.engine, self.precision, self.threads = net.engine, net.precision, net.threads
        self.source = net
        self.num_features = int(net.network.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images, "torch")
        net = self.source
        x = images.to(net.compute_dtype).contiguous(memory_format=torch.channels_last)
        return net.network.forward_head(net.network.forward_features(x), pre_logits=True).float()


def feature_network(net: DescribedNetwork, *, log: Log | None = None) -> DescribedNetwork:
    """The features of `net` (see the module's doc) on its own engine; a ValueError naming the fix for a module
    that is neither."""
    if isinstance(net, (TorchFeatures, FeatureEngineNetwork)):
        return net
    if isinstance(net, TorchNetwork):
        return TorchFeatures(net).eval()
    if isinstance(net, EngineNetwork) and net.onnx_file is not None:
        return _engine_features(net, log)
    raise ValueError(
        f"{type(net).__name__} gives no features; open the network with inceptionnet.inference.open_for_inference"
    )


class FeatureEngineNetwork(EngineNetwork):
    """An EngineNetwork whose graph ends at the pooled features (`num_features` wide)."""

    num_features: int | None = None


def _engine_features(net: EngineNetwork, log: Log | None) -> FeatureEngineNetwork:
    source = Path(net.onnx_file or "")
    cached = source.parent.resolve() == cache_folder().resolve()
    temp = None if cached else Path(tempfile.mkdtemp(prefix="inceptionnet-features-"))
    path = features_path(source) if temp is None else temp / features_path(source).name
    if path.is_file():
        width = feature_width(path)
    else:
        if log is not None:
            log(f"cutting {source.name} before its classifier: {path}")
        width = cut_at_features(source, path)
    try:
        runner = onnx_runner(path, net.engine, threads=net.threads, precision=_runner_precision(net))
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    features = FeatureEngineNetwork(
        runner, engine=net.engine, precision=net.precision, card=net.card, threads=net.threads, onnx_file=path
    )
    features.num_features = width
    if temp is not None:  # the engines may read the file lazily: keep it while the network lives
        weakref.finalize(features, shutil.rmtree, temp, ignore_errors=True)
    return features


def _runner_precision(net: EngineNetwork) -> str:
    """What the runner is asked to compute in: an int8 file computes as it is written (fp32 hints)."""
    return "fp32" if net.precision == "int8" else net.precision
