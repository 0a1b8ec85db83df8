"""An ONNX file of logits cut after the pooled features: the graph that `embed` and `similar` run on an engine.

The classifier of every network is the last node of its graph: a Gemm (or a MatMul and an Add) whose data
input is the pooled, flattened feature vector (N, num_features). `cut_at_features` makes that vector the
graph's output and drops the classifier and everything else no longer needed. The same cut serves the
fp32 exports of the engine cache (`onnxcache`) and the int8 files of `inceptionnet quantize`: in a QDQ
file the vector may reach the classifier through a QuantizeLinear / DequantizeLinear pair, and the cut
takes the float vector before the pair (what the int8 network computed, before the classifier's own
input quantization). The values are those the full graph computes at that node; the cut adds nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from inceptionnet.atomic import atomic_write
from inceptionnet.extras import require

FEATURES_SUFFIX = ".features.onnx"
_CLASSIFIERS = ("Gemm", "MatMul")


class CutError(ValueError):
    """The ONNX file does not end in a classifier whose input is the pooled features."""


def features_path(source: str | os.PathLike[str]) -> Path:
    """Where the features graph of `source` (model.onnx) is kept beside it: model.features.onnx."""
    path = Path(source)
    return path.with_name(path.name.removesuffix(".onnx") + FEATURES_SUFFIX)


def feature_width(path: str | os.PathLike[str]) -> int | None:
    """The feature width a file of `cut_at_features` records (None when it records none)."""
    onnx = require("onnx", extra="onnxruntime", purpose="running embeddings on an ONNX engine")
    props = {p.key: p.value for p in onnx.load(os.fspath(path), load_external_data=False).metadata_props}
    return int(props["num_features"]) if props.get("num_features", "").isdigit() else None


def cut_at_features(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> int:
    """Write the graph of `source` ending at the pooled features into `output` (atomically); returns their width.

    Raises CutError naming the file when its last node is not a classifier on a (N, C) vector.
    """
    onnx = require("onnx", extra="onnxruntime", purpose="running embeddings on an ONNX engine")
    model = onnx.load(os.fspath(source))
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    features = _classifier_input(graph.output[0].name, producers, source)
    width = _width(model, features, producers, source)
    keep = _needed(features, producers)
    nodes = [n for n in graph.node if id(n) in keep]
    used = {name for n in nodes for name in n.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    kept_values = [v for v in graph.value_info if v.name != features]
    del graph.value_info[:]
    graph.value_info.extend(kept_values)
    del graph.output[:]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    out = onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, [batch.dim_param or None, width])
    graph.output.append(out)
    props = {p.key: p.value for p in model.metadata_props}
    props.update(output="features", num_features=str(width))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    atomic_write(output, model.SerializeToString())
    return width


def _classifier_input(logits: str, producers: dict, source: str | os.PathLike[str]) -> str:
    """The float tensor the classifier producing `logits` reads: its data input, before any Q/DQ pair."""
    node = producers.get(logits)
    if node is not None and node.op_type == "Add":  # MatMul + bias
        node = next((producers[i] for i in node.input if i in producers and producers[i].op_type == "MatMul"), None)
    if node is None or node.op_type not in _CLASSIFIERS:
        found = "no node" if node is None else f"a {node.op_type} node"
        raise CutError(
            f"{source} ends in {found}, not the classifier (Gemm or MatMul) of an inceptionnet export; export the "
            "network again (inceptionnet export, or let embed export it)"
        )
    name = node.input[0]
    while name in producers and producers[name].op_type == "DequantizeLinear":
        quantize = producers.get(producers[name].input[0])
        if quantize is None or quantize.op_type != "QuantizeLinear":
            break
        name = quantize.input[0]
    return name


def _width(model: Any, features: str, producers: dict, source: str | os.PathLike[str]) -> int:
    """The feature width, from the classifier's weight (its input dimension; an int8 weight behind its
    DequantizeLinear has the same shape)."""
    graph = model.graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for node in (n for n in graph.node if features in n.input or _dequantized(n, features, producers)):
        if node.op_type not in _CLASSIFIERS:
            continue
        weight = node.input[1]
        if weight not in shapes and weight in producers and producers[weight].op_type == "DequantizeLinear":
            weight = producers[weight].input[0]
        if len(shapes.get(weight, ())) == 2:
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            return int(shapes[weight][1] if transposed else shapes[weight][0])
    raise CutError(f"{source}: the width of the features {features!r} cannot be read; export the network again")


def _dequantized(node: Any, features: str, producers: dict) -> bool:
    """Whether `node` reads `features` through a QuantizeLinear / DequantizeLinear pair."""
    first = producers.get(node.input[0]) if node.input else None
    if first is None or first.op_type != "DequantizeLinear":
        return False
    quantize = producers.get(first.input[0])
    return quantize is not None and quantize.op_type == "QuantizeLinear" and quantize.input[0] == features


def _needed(output: str, producers: dict) -> set[int]:
    """The ids of the nodes `output` depends on."""
    keep: set[int] = set()
    todo = [output]
    while todo:
        node = producers.get(todo.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        todo.extend(node.input)
    return keep
