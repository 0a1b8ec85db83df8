"""An int8 file's 8-bit weights narrowed to -64..64, for a CPU whose int8 kernels would saturate on them.

inceptionnet.cpu says why: without VNNI or AMX, x86 int8 kernels add pairs of uint8 x int8 products
in 16 bits, and 8-bit weights can overflow them. A folder quantized for VNNI CPUs (weights in
-127..127) is therefore run elsewhere with each weight halved and rounded, w' = round(w / 2) in
-64..64, and its scale doubled, so that w' x scale' stays the weight it was to half a step of the
new grid. A convolution's int32 bias is kept on the scale of input x weight (ONNX's rule for the
bias of a quantized convolution, which the engines rely on when they fuse the QDQ pairs): it is
halved too, and its scale doubled. Quantizing again with 7-bit weights (`--target-cpu any`) rounds
them by GPTQ instead, closer to fp32 (docs/performance.md, "int8 accuracy").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def narrow_weights(model: Any, limit: int) -> int:
    """Rewrite, in place, the int8 weights of the QDQ `model` (onnx.ModelProto) that exceed -limit..limit.

    Returns how many weight tensors were narrowed. A weight is an int8 initializer with zero point 0
    read by the DequantizeLinear in front of a convolution's or matrix product's second input; its
    bias (the third input, an int32 DequantizeLinear) follows its scale.
    """
    from onnx import numpy_helper

    init = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    done: set[str] = set()  # initializers rewritten: each once, even where nodes share one
    narrowed = 0
    for node in model.graph.node:
        if node.op_type not in _WEIGHTED or len(node.input) < 2:
            continue
        weight = _dequantized(producer.get(node.input[1]), init, np.int8)
        if weight is None or weight[0] in done:
            continue
        ints = numpy_helper.to_array(init[weight[0]]).astype(np.int32)
        factor = math.ceil(int(np.abs(ints).max(initial=0)) / limit)
        if factor <= 1:
            continue
        _rescale(init, weight, factor, bound=limit, done=done)
        bias = _dequantized(producer.get(node.input[2]), init, np.int32) if len(node.input) > 2 else None
        if bias is not None:
            _rescale(init, bias, factor, bound=None, done=done)
        narrowed += 1
    return narrowed


def _dequantized(dq: Any, init: dict[str, Any], dtype: type) -> tuple[str, str] | None:
    """(integer initializer, scale initializer) of a DequantizeLinear reading a `dtype` constant with zero
    point 0; None for anything else."""
    from onnx import numpy_helper

    if dq is None or dq.op_type != "DequantizeLinear" or not all(name in init for name in dq.input[:2]):
        return None
    if numpy_helper.to_array(init[dq.input[0]]).dtype != dtype:
        return None
    if len(dq.input) > 2 and dq.input[2] and numpy_helper.to_array(init[dq.input[2]]).any():
        return None
    return dq.input[0], dq.input[1]


def _rescale(init: dict[str, Any], names: tuple[str, str], factor: int, *, bound: int | None, done: set[str]) -> None:
    """The integers divided by `factor` (rounded, clipped to +-bound) and the scale multiplied by it."""
    from onnx import numpy_helper

    ints_name, scale_name = names
    if ints_name not in done:
        ints = numpy_helper.to_array(init[ints_name])
        scaled = np.round(ints.astype(np.float64) / factor)
        if bound is not None:
            scaled = np.clip(scaled, -bound, bound)
        init[ints_name].CopyFrom(numpy_helper.from_array(scaled.astype(ints.dtype), ints_name))
    if scale_name not in done:
        scale = numpy_helper.to_array(init[scale_name])
        init[scale_name].CopyFrom(numpy_helper.from_array((scale * factor).astype(scale.dtype), scale_name))
    done.update(names)
