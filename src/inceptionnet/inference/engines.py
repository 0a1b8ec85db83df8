"""The fastest way to run a network for inference: fused on PyTorch, or on ONNX Runtime or OpenVINO.

`inference_network(model, engine)` returns a module that stands where the network did (predict, eval,
bench): a float NCHW batch in, float32 logits out, with the network's model card (`.card`, and
model_name, preprocessing, class_names, num_classes, ... read from it) and `engine` / `precision`
saying what runs it.

- "torch": `fuse_for_inference` (BatchNorm folded, sibling 1x1 convs merged) in channels_last,
  its weights cast once for bf16 / fp16; any device.
- "onnxruntime", "openvino": the network exported to ONNX with BatchNorm folded into the
  convolutions and a dynamic batch dimension (`export_model`), run on the CPU with `threads`
  intra-op threads (default: torch's). The 1x1 heads are not merged there: the engines fuse their
  own graph, and on both a merged graph ran slower than the BN-folded one. OpenVINO compiles a
  static shape per batch size.
- "auto": on the CPU, OpenVINO if installed, else ONNX Runtime, else torch (OpenVINO was the
  fastest of the three on the CPUs measured, docs/performance.md); on any other device, torch.
  Auto never lowers the precision: bf16 is asked for with `dtype`. For a small job (`images`
  below AUTO_MIN_IMAGES) whose export is not cached yet, auto runs torch: the export would take
  longer than it saves.

Exporting costs time: about half a minute for Inception-v4 at 299 on two cores (tracing, folding,
and a check of the file against the eager network), a few seconds for small networks. The ONNX
file is therefore kept in a cache, keyed by a hash of the weights, the network's card at the input
size and the torch and package versions: `$INCEPTIONNET_ENGINE_CACHE`, by default
`~/.cache/inceptionnet/onnx` (about 4 bytes per parameter: 170 MB for Inception-v4). By default
only networks with loaded weights are cached, since the same weights come back; a randomly
initialised one goes to a temporary folder, removed when its EngineNetwork is garbage-collected.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Callable

import torch

from inceptionnet.cpu import cpu_features
from inceptionnet.devices import default_device, dtype_named
from inceptionnet.export.formats import export_card
from inceptionnet.export.fuse import fuse_for_inference
from inceptionnet.export.onnxcache import export_path, onnx_export
from inceptionnet.export.runtimes import (
    ENGINES as CPU_ENGINES,
)
from inceptionnet.export.runtimes import (
    DescribedNetwork,
    EngineNetwork,
    check_engine,
    first_installed,
    onnx_runner,
)
from inceptionnet.models import InceptionNetwork

ENGINES = ("auto", "torch", *CPU_ENGINES)
DTYPES = ("fp32", "bf16", "fp16")
# Below this many images, auto does not export (about 30 s for Inception-v4 on two cores, what torch
# needs for about 300 images there); a cached export is used whatever the number.
AUTO_MIN_IMAGES = 256

Log = Callable[[str], None]


def bf16_supported(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CPU with AVX512-BF16 or AMX (inceptionnet.cpu, which
    honours ONEDNN_MAX_CPU_ISA), a CUDA GPU that supports it."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_features().bf16


def bf16_refusal(device: torch.device) -> str:
    """Why bf16 is refused on `device` (which lacks native bf16), with the fix."""
    if device.type != "cpu":
        return f"bf16 inference needs hardware support and {device} has no bf16; use --dtype fp32"
    return (
        f"bf16 needs AVX512-BF16 or AMX, and this CPU, {cpu_features().describe()}, has neither: bf16 would be "
        "emulated, many times slower than fp32 (docs/performance.md, 'CPU kinds'); use --dtype fp32"
    )


def engine_device(engine: str, device: str | torch.device | None = None) -> torch.device:
    """The device to run on: `device` as given; by default the CPU for a CPU engine, else CUDA when available."""
    if device is None and engine in CPU_ENGINES:
        return torch.device("cpu")
    return default_device(device)


def choose_engine(engine: str = "auto", *, dtype: str = "fp32", device: str | torch.device | None = None) -> str:
    """The engine `inference_network` runs ("torch", "onnxruntime", "openvino"): auto's pick, or `engine` checked.

    Raises a ValueError (EngineUnavailable when not installed) naming the fix when `engine` cannot
    run `dtype` on `device`.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    dev = engine_device(engine, device)
    if dev.type != "cpu":
        if engine in CPU_ENGINES:
            raise ValueError(
                f"the {engine} engine runs on the CPU, not on {dev}; use --device cpu, or --engine torch on {dev}"
            )
        chosen = "torch"
    elif engine == "auto":
        candidates = {"fp32": ("openvino", "onnxruntime"), "bf16": ("openvino",)}.get(dtype, ())
        chosen = first_installed(candidates) or "torch"
    else:
        chosen = engine
    _check_precision(chosen, dtype, dev)
    return chosen


def _check_precision(engine: str, dtype: str, device: torch.device) -> None:
    if dtype == "fp16" and device.type != "cuda":
        raise ValueError("fp16 inference needs a CUDA device (CPUs compute fp16 slowly); use --dtype bf16 or fp32")
    if dtype == "bf16" and not bf16_supported(device):
        raise ValueError(bf16_refusal(device))
    if engine in CPU_ENGINES:
        check_engine(engine, dtype)


class TorchNetwork(DescribedNetwork):
    """The fused network on PyTorch (channels_last, cast to `precision`): float batch in, float32 logits out.

    `network` is the fused InceptionNetwork itself (with forward_features, forward_head); the card is
    `model`'s (any input size from its minimum up).
    """

    engine = "torch"

    def __init__(self, model: InceptionNetwork, *, dtype: str, device: torch.device) -> None:
        super().__init__(model.card)
        self.precision = dtype
        self.compute_dtype = dtype_named(dtype)
        self.threads: int | None = torch.get_num_threads() if device.type == "cpu" else None
        network = fuse_for_inference(model).to(device)
        self.network = network.to(self.compute_dtype).to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images, "torch")
        x = images.to(self.compute_dtype).contiguous(memory_format=torch.channels_last)
        return self.network(x).float()


def inference_network(
    model: InceptionNetwork | DescribedNetwork,
    engine: str = "auto",
    *,
    dtype: str | None = None,
    threads: int | None = None,
    input_size: int | None = None,
    device: str | torch.device | None = None,
    cache: bool | str | os.PathLike[str] | None = None,
    images: int | None = None,
    log: Log | None = None,
) -> DescribedNetwork:
    """`model` (a network of `create_model`) ready for inference on `engine` in `dtype` (see the module's doc).

    `dtype`: "fp32" (the default), "bf16", or "fp16" (CUDA). `threads`: intra-op threads of the
    engines (default torch's); for "torch", torch.set_num_threads. `input_size`: the input size an
    ONNX export is made for (default the network's preprocessing); the engines then take that size
    only, torch any. `device`: default CUDA when available, the CPU for an explicit CPU engine.
    `cache`: where the ONNX file is kept (None: the cache for networks with loaded weights, else a
    temporary folder; True / False: always / never the cache; a folder). `images`: how many images
    the network will run on, when known (auto skips a slow export for a few). `log` receives a line
    before a slow export and says why auto chose torch for a small job. A network already made for inference
    (or an int8 one of `inceptionnet quantize`) is returned as it is when `engine` is "auto" or its
    own and `dtype` is None or its precision.
    """
    if isinstance(model, DescribedNetwork):
        if engine in ("auto", model.engine) and dtype in (None, model.precision):
            return model
        raise ValueError(
            f"{model.model_name} already runs on {model.engine} in {model.precision}; "
            "start again from the original network"
        )
    if not isinstance(model, InceptionNetwork):
        raise ValueError(f"inference_network takes a network of inceptionnet.create_model, got {type(model).__name__}")
    dtype = dtype or "fp32"
    dev = engine_device(engine, device)
    chosen = choose_engine(engine, dtype=dtype, device=dev)
    size = input_size or model.preprocessing.input_size
    if engine == "auto" and chosen != "torch" and _small_job(model, images, input_size=size, cache=cache):
        (log or (lambda _msg: None))(
            f"auto: torch for {images} images (an ONNX export for {chosen} pays from {AUTO_MIN_IMAGES}; "
            f"--engine {chosen} exports and caches it)"
        )
        chosen = "torch"
    if chosen == "torch":
        if threads is not None:
            torch.set_num_threads(threads)
        return TorchNetwork(model, dtype=dtype, device=dev)
    return _on_engine(model, chosen, dtype=dtype, input_size=size, threads=threads, cache=cache, log=log)


def _small_job(
    model: InceptionNetwork, images: int | None, *, input_size: int, cache: bool | str | os.PathLike[str] | None
) -> bool:
    """Too few images for an export to pay, and no export cached."""
    if images is None or images >= AUTO_MIN_IMAGES:
        return False
    path = export_path(model, input_size=input_size, cache=cache)
    return path is None or not path.is_file()


def _on_engine(
    model: InceptionNetwork,
    engine: str,
    *,
    dtype: str,
    input_size: int,
    threads: int | None,
    cache: bool | str | os.PathLike[str] | None,
    log: Log | None,
) -> EngineNetwork:
    """`model` exported to ONNX (or its cached export) and run by a CPU engine."""
    size = input_size
    chosen = engine
    path, temp = onnx_export(model, input_size=size, cache=cache, log=log)
    threads = threads or torch.get_num_threads()
    try:
        runner = onnx_runner(path, chosen, threads=threads, precision=dtype)
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    card = export_card(model, input_size=size)  # the file's own card: it takes that size only
    # what runs: the cached file, or one in a temporary folder
    net = EngineNetwork(runner, engine=chosen, precision=dtype, card=card, threads=threads, onnx_file=path)
    if temp is not None:  # the engines may read the file lazily: keep it while the network lives
        weakref.finalize(net, shutil.rmtree, temp, ignore_errors=True)
    return net


def describe_engine(net: DescribedNetwork) -> str:
    """One line saying what runs `net`: "openvino, fp32, 2 threads (inception_v4 at 299x299)"."""
    parts = [net.engine, net.precision]
    if net.threads:
        parts.append(f"{net.threads} threads")
    size = net.preprocessing.input_size
    return f"{', '.join(parts)} ({net.model_name} at {size}x{size})"
