"""Int8 weights rounded by GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", 2022) instead of to the nearest step.

Rounding each weight to its nearest int8 step minimises the error of the weights; what matters is
the error of the convolution's output on real inputs. For a convolution y = W x over the columns x
of its unfolded input (im2col: in_channels x kernel positions), that error is
(W - Q) H (W - Q)^T with H = sum x x^T over the calibration images. GPTQ rounds one input column
of W at a time and spreads its rounding error over the columns not yet rounded, weighted by the
inverse of H, so that the rounded convolution reproduces the fp32 one on the calibration inputs.
The scales stay those the quantizer chose (per output channel, symmetric), so the file's format and
its fast int8 kernels are unchanged; only the int8 values differ.

`hessians` measures H for every convolution of the prepared fp32 ONNX file with ONNX Runtime (each
convolution's input, unfolded by torch), `round_weights` rewrites the int8 weights of the QDQ file.
docs/performance.md ("int8 accuracy") gives the measured effect on agreement with fp32.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DAMPING = 0.01  # added to H's diagonal, as a fraction of its mean: keeps the inverse stable
ROWS_PER_COLUMN = 16  # unfolded input rows sampled per column of W (at least MIN_ROWS): H is d x d
MIN_ROWS = 8192
INT8_MAX = 127  # symmetric int8 weights: -127..127 (or -64..64 for any CPU: `limit`, inceptionnet.cpu)


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx.helper import get_attribute_value

    return next((get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _geometry(node: Any, kernel: tuple[int, ...]) -> tuple[tuple[int, ...], ...] | None:
    """(kernel, strides, pads as top, left, bottom, right, dilations) of a 2-D, ungrouped Conv; None otherwise."""
    if len(kernel) != 2 or _attribute(node, "group", 1) != 1 or _attribute(node, "auto_pad", b"NOTSET") != b"NOTSET":
        return None
    strides = tuple(_attribute(node, "strides", [1, 1]))
    pads = tuple(_attribute(node, "pads", [0, 0, 0, 0]))
    dilations = tuple(_attribute(node, "dilations", [1, 1]))
    return kernel, strides, pads, dilations


def _convolutions(model: Any) -> dict[str, tuple[str, tuple[tuple[int, ...], ...]]]:
    """Weight initializer name -> (input tensor name, geometry) of each Conv whose weights are a constant."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    convs = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in shapes:
            continue
        geometry = _geometry(node, shapes[node.input[1]][2:])
        if geometry is not None:
            convs[node.input[1]] = (node.input[0], geometry)
    return convs


def _columns(
    x: torch.Tensor, geometry: tuple[tuple[int, ...], ...], rows: int | None = None, gen: torch.Generator | None = None
) -> torch.Tensor:
    """The unfolded input of a convolution: one row per output position (image, y, x), one column per
    weight of a filter (channel, ky, kx), as F.unfold orders them; with `rows`, that many positions
    drawn at random (`gen`) when there are more, gathered without unfolding the rest."""
    kernel, strides, pads, dilations = geometry
    x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
    n, c, height, width = x.shape
    out_h = (height - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    out_w = (width - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    if rows is None or n * out_h * out_w <= rows:
        cols = F.unfold(x, kernel, dilation=dilations, stride=strides)  # N, C*kh*kw, L
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    pick = torch.randperm(n * out_h * out_w, generator=gen)[:rows]
    image, y, xo = pick // (out_h * out_w), pick // out_w % out_h, pick % out_w
    ys = (y * strides[0])[:, None] + torch.arange(kernel[0]) * dilations[0]  # rows, kh
    xs = (xo * strides[1])[:, None] + torch.arange(kernel[1]) * dilations[1]  # rows, kw
    patches = x[image[:, None, None], :, ys[:, :, None], xs[:, None, :]]  # rows, kh, kw, C
    return patches.permute(0, 3, 1, 2).reshape(rows, c * kernel[0] * kernel[1])


def hessians(prepared: Any, batches: Collection[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """H = sum x x^T (float64, mean over rows) of every convolution's unfolded input, keyed by weight name.

    `prepared` is the prepared fp32 ONNX model (left unchanged); `batches` are its inputs. The rows
    of each batch are sampled so that each H sees about max(MIN_ROWS, ROWS_PER_COLUMN x d), with a
    generator seeded by the convolution's input name: the same file gives the same H in every run.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(prepared)
    convs = _convolutions(model)
    fed = {i.name for i in model.graph.input}
    inputs = sorted({name for name, _ in convs.values()} - fed)  # what the session must return
    graph_outputs = {o.name for o in model.graph.output}
    for name in inputs:
        if name not in graph_outputs:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_cpu_mem_arena = False  # the arena kept ~1.4 GB more at the peak for Inception-v4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    # (input, geometry) -> [sum of x x^T, rows, generator]: shared by sibling convolutions; the rows drawn
    # depend on the input's name, not on the (hash-randomised) order of the loop below
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for feed in batches:
        values = {**feed, **dict(zip(inputs, session.run(inputs, feed), strict=True))}
        for key in set(convs.values()):
            name, geometry = key
            x = torch.from_numpy(values[name])
            d = x.shape[1] * math.prod(geometry[0])
            if key not in sums:
                generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                sums[key] = [torch.zeros(d, d, dtype=torch.float64), 0, generator]
            acc = sums[key]
            cols = _columns(x, geometry, math.ceil(max(MIN_ROWS, ROWS_PER_COLUMN * d) / len(batches)), acc[2])
            acc[0] += (cols.T @ cols).double()
            acc[1] += cols.shape[0]
    for acc in sums.values():
        acc[0] /= acc[1]  # in place: the Hessians are most of this step's memory
    return {w: sums[key][0] for w, key in convs.items()}


def gptq(
    weight: torch.Tensor, hessian: torch.Tensor, scale: torch.Tensor, block: int = 128, *, limit: int = INT8_MAX
) -> torch.Tensor:
    """Integer weights (out, d) in -limit..limit for `weight` (out, d) with per-row `scale`, rounded by GPTQ.

    Columns are rounded in order; each one's error moves the columns after it, within its `block` of
    columns at once and on the columns after the block in one matrix product per block (the same
    result as column by column, faster).
    """
    w = weight.double().clone()
    h = hessian.double().clone()
    unused = torch.diagonal(h) == 0  # an input that is zero on every calibration image: rounded to nearest
    h[unused, unused] = 1.0
    h += DAMPING * torch.diagonal(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    # the upper Cholesky factor of H^-1: row i holds how the error of column i moves the columns after it
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    s = scale.double()
    q = torch.empty_like(w)
    for start in range(0, w.shape[1], block):
        end = min(start + block, w.shape[1])
        errors = torch.empty(w.shape[0], end - start, dtype=w.dtype)
        for i in range(start, end):
            q[:, i] = torch.clamp(torch.round(w[:, i] / s), -limit, limit)
            errors[:, i - start] = (w[:, i] - q[:, i] * s) / u[i, i]
            w[:, i + 1 : end] -= errors[:, i - start, None] * u[i, i + 1 : end][None, :]
        w[:, end:] -= errors @ u[start:end, end:]
    return q


def round_weights(
    quantized: Any, prepared: Any, hessian: dict[str, torch.Tensor], *, limit: int = INT8_MAX
) -> tuple[int, int]:
    """Rewrite, in place, the int8 weights of `quantized` (the QDQ model) by GPTQ, in -limit..limit (the
    range the quantizer's scales were chosen for).

    Returns how many convolutions were rounded by GPTQ, of how many with int8 weights.

    A Conv's weight arrives through DequantizeLinear(int8 initializer, per-channel scale, zero point 0);
    its fp32 weights are the initializer of the same name in `prepared`. Anything else is left as it is.
    """
    from onnx import numpy_helper

    fp32 = {t.name: t for t in prepared.graph.initializer}
    init = {t.name: t for t in quantized.graph.initializer}
    producer = {o: n for n in quantized.graph.node for o in n.output}
    rounded = total = 0
    for node in quantized.graph.node:
        dq = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3:
            continue
        total += 1
        name, scale_name, zero_name = dq.input[:3]
        base = name.removesuffix("_quantized")
        if base not in fp32 or base not in hessian or scale_name not in init or zero_name not in init:
            continue
        if numpy_helper.to_array(init[zero_name]).any():
            continue  # not symmetric: not the format written here
        weight = torch.from_numpy(numpy_helper.to_array(fp32[base]).copy())
        scale = torch.from_numpy(numpy_helper.to_array(init[scale_name]).astype(np.float64))
        flat = weight.reshape(weight.shape[0], -1)
        if scale.shape != (flat.shape[0],) or hessian[base].shape[0] != flat.shape[1]:
            continue
        ints = gptq(flat, hessian[base], scale, limit=limit).reshape(weight.shape).numpy().astype(np.int8)
        init[name].CopyFrom(numpy_helper.from_array(ints, name))
        rounded += 1
    return rounded, total
