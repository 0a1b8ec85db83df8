"""`embed` and `similar` on small real images: one row per image readable by pandas, a gallery image finds itself
first, engine embeddings equal PyTorch's, every data source, resume, torchrun, the index kept and rebuilt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.data import eval_transform, read_image
from inceptionnet.data.shardwriter import write_shards
from inceptionnet.export.features import cut_at_features
from inceptionnet.factory import load_model
from inceptionnet.inference.batchjob import meta_file, part_file
from inceptionnet.quantization.quantize import quantize_model
from inceptionnet.retrieval import embed, read_table
from inceptionnet.retrieval.index import build, index_files, open_index
from inceptionnet.retrieval.search import Gallery, similar
from inceptionnet.retrieval.table import parquet, record
from inceptionnet.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(__file__).resolve().parents[1] / "src"
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path]) -> Path:
    """Three CIFAR-10 classes of the demo data: 6 training and 2 validation images each."""
    return make_image_folder(tmp_path_factory.mktemp("photos"), classes=3, train=6, val=2)


@pytest.fixture(scope="module")
def gallery(photos: Path, tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gallery") / "train.parquet"
    summary = embed(photos, split="train", output=out, model=str(tiny_classifier), engine="torch", batch_size=5)
    assert (summary.embedded, summary.failed, summary.rows) == (18, 0, 18)
    return out


def test_one_row_per_image_with_its_label_readable_by_pandas(gallery: Path, photos: Path) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(gallery)
    files = sorted(str(p) for p in (photos / "train").glob("*/*.jpg"))
    assert list(frame.columns) == ["path", "label", "error", "embedding"]
    assert list(frame["path"]) == files
    assert list(frame["label"]) == [Path(p).parent.name for p in files]
    assert frame["error"].isna().all()
    vectors = np.stack(frame["embedding"].to_list())
    assert vectors.dtype == np.float32 and vectors.shape == (18, 256)  # 2048 x 1/8 width
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(18), abs=1e-5)
    meta = read_table(gallery).meta
    assert meta["model"] == "inception_v3" and meta["normalize"] is True and meta["num_features"] == 256


def test_the_vectors_are_the_networks_pooled_features(gallery: Path, tiny_classifier: Path) -> None:
    table = read_table(gallery)
    model = load_model(str(tiny_classifier)).eval()
    images = torch.stack([eval_transform(model.preprocessing)(read_image(p)) for p in table.paths[:4]])
    with torch.no_grad():
        eager = torch.nn.functional.normalize(model.forward_head(model.forward_features(images), pre_logits=True))
    assert np.abs(table.vectors[:4] - eager.numpy()).max() < 1e-4


def test_a_gallery_image_queried_returns_itself_first(gallery: Path, photos: Path) -> None:
    queries = sorted((photos / "train").glob("*/*.jpg"))[::5]
    matches = similar(queries, index=gallery, top_k=3, engine="torch")
    for query, match in zip(queries, matches, strict=True):
        assert match.error is None and len(match.neighbours) == 3
        first = match.neighbours[0]
        assert first.path == str(query) and first.similarity == pytest.approx(1.0, abs=1e-5)
        assert first.label == query.parent.name
        assert [n.similarity for n in match.neighbours] == sorted(
            (n.similarity for n in match.neighbours), reverse=True
        )


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_engine_embeddings_match_pytorch(
    engine: str, gallery: Path, photos: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    pytest.importorskip(engine)
    out = tmp_path / f"{engine}.parquet"
    embed(photos, split="train", output=out, model=str(tiny_classifier), engine=engine, batch_size=8)
    got, want = read_table(out), read_table(gallery)
    assert got.paths == want.paths
    assert np.abs(got.vectors - want.vectors).max() < 1e-4
    assert got.meta["precision"] == "fp32"


def test_unnormalised_vectors_keep_their_length(
    photos: Path, tiny_classifier: Path, gallery: Path, tmp_path: Path
) -> None:
    out = tmp_path / "raw.parquet"
    assert main(["embed", str(photos / "val"), "--model", str(tiny_classifier), "--output", str(out),
                 "--engine", "torch", "--no-normalize"]) == 0  # fmt: skip
    raw = read_table(out)
    assert raw.meta["normalize"] is False
    norms = np.linalg.norm(raw.vectors, axis=1)
    assert not np.allclose(norms, 1.0)
    assert read_table(out).labels == [Path(p).parent.name for p in raw.paths]


def test_every_data_source_gives_the_same_vectors(photos: Path, tiny_classifier: Path, tmp_path: Path) -> None:
    write_shards(photos, tmp_path / "shards")
    spec = dict(model=str(tiny_classifier), engine="torch")
    embed(photos, split="val", output=tmp_path / "folder.parquet", **spec)
    embed(tmp_path / "shards", split="val", output=tmp_path / "shards.parquet", **spec)
    files = sorted((photos / "val").glob("*/*.jpg"))
    embed([str(f) for f in files], output=tmp_path / "files.parquet", **spec)
    folder, shards, plain = (read_table(tmp_path / f"{n}.parquet") for n in ("folder", "shards", "files"))
    assert len(folder.paths) == len(shards.paths) == len(plain.paths) == 6
    assert all(":" in p and ".tar" in p for p in shards.paths)
    assert plain.labels == [None] * 6  # image files: no labels
    by_vector = {tuple(np.round(v, 4)): label for v, label in zip(folder.vectors, folder.labels, strict=True)}
    assert [by_vector[tuple(np.round(v, 4))] for v in shards.vectors] == shards.labels
    assert np.abs(plain.vectors - folder.vectors).max() < 1e-5


def test_an_unreadable_image_is_a_row_with_its_error(tmp_path: Path, photos: Path, tiny_classifier: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.jpg").write_bytes(next((photos / "val").glob("*/*.jpg")).read_bytes())
    (images / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out.parquet"
    assert main(["embed", str(images), "--model", str(tiny_classifier), "--output", str(out), "--engine", "torch"]) == 1
    table = read_table(out)
    assert [Path(p).name for p in table.paths] == ["bad.jpg", "good.jpg"]
    assert table.errors[0].startswith("not a readable image") and table.errors[1] is None
    assert list(table.rows) == [1]
    assert [m.neighbours[0].row for m in similar([images / "good.jpg"], index=out, engine="torch")] == [1]


def test_a_rerun_embeds_only_what_is_missing(
    photos: Path, tiny_classifier: Path, gallery: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    table = parquet().read_table(gallery)
    parquet().write_table(table.slice(0, 7), out)  # a file holding 7 of the 18 rows ...
    meta_file(out).write_text(meta_file(gallery).read_text())
    want = read_table(gallery)
    lines = [json.dumps(record(want.paths[i], want.labels[i], want.vectors[i], None)) for i in (7, 8)]
    part_file(out, 1).write_text("\n".join(lines) + "\n" + lines[0][:30])  # ... and a part file cut mid-line
    summary = embed(photos, split="train", output=out, model=str(tiny_classifier), engine="torch")
    assert (summary.done_before, summary.embedded, summary.rows) == (9, 9, 18)
    assert not part_file(out, 1).exists()
    merged = read_table(out)
    assert merged.paths == want.paths and np.abs(merged.vectors - want.vectors).max() < 1e-5


def test_a_rerun_with_other_options_is_refused(
    photos: Path, gallery: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    out = tmp_path / "copy.parquet"
    out.write_bytes(gallery.read_bytes())
    meta_file(out).write_text(meta_file(gallery).read_text())
    with pytest.raises(ValueError, match=r"holds embeddings of another network or options \(normalize True -> False\)"):
        embed(photos, split="train", output=out, model=str(tiny_classifier), engine="torch", normalize=False)


def test_the_index_is_kept_and_rebuilt_when_the_file_changes(
    gallery: Path, photos: Path, tiny_classifier: Path, tmp_path: Path
) -> None:
    table = tmp_path / "gallery.parquet"
    table.write_bytes(gallery.read_bytes())
    index_file, record_file = index_files(table)
    first, data = open_index(table)
    assert data is not None and first.kind == "exact" and first.size == 18 and index_file.is_file()
    built = index_file.stat().st_mtime_ns
    os.utime(table, ns=(time.time_ns(), time.time_ns()))  # touched, the same bytes: the index is kept
    again, data = open_index(table)
    assert data is None and again.size == 18 and index_file.stat().st_mtime_ns == built
    val = read_table(embed(photos, split="val", output=tmp_path / "val.parquet", model=str(tiny_classifier),
                           engine="torch").output)  # fmt: skip
    table.write_bytes((tmp_path / "val.parquet").read_bytes())
    changed, data = open_index(table)  # another file under the same name: rebuilt
    assert data is not None and changed.size == len(val.rows) == 6
    assert json.loads(record_file.read_text())["vectors"] == 6
    assert Gallery(table).paths == val.paths


def test_beyond_the_exact_size_an_ivf_index_finds_the_same_neighbours() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 20, 3000)] + 0.5 * rng.standard_normal((3000, 64)).astype(np.float32)
    exact, _ = build(vectors, np.arange(3000))
    ivf, kind = build(vectors, np.arange(3000) + 7, exact_max=1000)
    assert kind["kind"] == "ivf" and kind["lists"] == 219 and kind["nprobe"] == 16
    queries = np.ascontiguousarray(vectors[:200] / np.linalg.norm(vectors[:200], axis=1, keepdims=True))
    _, want = exact.search(queries, 10)
    _, got = ivf.search(queries, 10)
    assert (got[:, 0] == np.arange(200) + 7).all()  # each vector finds itself first, under its id
    recall = np.mean([len(set(g - 7) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.9


def test_a_query_network_other_than_the_files_is_refused(gallery: Path, photos: Path, tmp_path: Path) -> None:
    other = create_model("inception_v3", width=0.125, num_classes=3)
    other.preprocessing = load_model(read_table(gallery).meta["weights"]).preprocessing
    other.class_names = ("cat", "dog", "bird")
    weights = save_weights(other, tmp_path / "other.safetensors")
    with pytest.raises(
        ValueError, match=r"holds embeddings of inception_v3 .* not of inception_v3 .*other.safetensors"
    ):
        similar([next((photos / "val").glob("*/*.jpg"))], index=gallery, model=str(weights), engine="torch")


@pytest.mark.slow  # quantizing the network: about 35 s on two cores (the cut of a QDQ graph: the test below)
def test_an_int8_folder_embeds_what_its_fp32_network_does(
    photos: Path, tiny_classifier: Path, gallery: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    folder = quantize_model(load_model(str(tiny_classifier)), photos / "train", tmp_path / "int8", images=18,
                            method="minmax", min_agreement=0).folder  # fmt: skip
    out = tmp_path / "int8.parquet"
    summary = embed(photos, split="train", output=out, model=str(folder))
    assert "int8" in summary.engine
    got, want = read_table(out), read_table(gallery)
    assert got.meta["precision"] == "int8" and got.paths == want.paths
    cosine = np.sum(got.vectors * want.vectors, axis=1)
    assert cosine.min() > 0.98  # the same directions, to int8's rounding
    query = Path(got.paths[4])
    assert similar([query], index=out)[0].neighbours[0].path == str(query)


def test_a_qdq_graph_is_cut_before_the_quantized_classifier_input(tmp_path: Path) -> None:
    """An int8 file's classifier reads the features through QuantizeLinear / DequantizeLinear (and its weight
    through a DequantizeLinear): the cut ends at the float features before the pair."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    h, tp = onnx.helper, onnx.TensorProto
    weight = np.arange(12, dtype=np.int8).reshape(3, 4)
    nodes = [
        h.make_node("ReduceMean", ["x", "axes"], ["mean"], keepdims=0),
        h.make_node("QuantizeLinear", ["mean", "s", "z"], ["q"]),
        h.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        h.make_node("DequantizeLinear", ["w_int8", "ws"], ["w"]),
        h.make_node("Gemm", ["dq", "w"], ["logits"], transB=1),
    ]
    inits = [
        onnx.numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
        onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        onnx.numpy_helper.from_array(np.array(128, np.uint8), "z"),
        onnx.numpy_helper.from_array(weight, "w_int8"),
        onnx.numpy_helper.from_array(np.array(0.5, np.float32), "ws"),
    ]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", tp.FLOAT, ["n", 4, 2, 2])],
                         [h.make_tensor_value_info("logits", tp.FLOAT, ["n", 3])], inits)  # fmt: skip
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 19)])
    onnx.save(model, tmp_path / "int8.onnx")
    assert cut_at_features(tmp_path / "int8.onnx", tmp_path / "cut.onnx") == 4
    cut = onnx.load(tmp_path / "cut.onnx")
    assert [o.name for o in cut.graph.output] == ["mean"] and [n.op_type for n in cut.graph.node] == ["ReduceMean"]
    x = np.random.default_rng(0).standard_normal((2, 4, 2, 2)).astype(np.float32)
    (got,) = ort.InferenceSession(str(tmp_path / "cut.onnx")).run(None, {"x": x})
    assert np.allclose(got, x.mean(axis=(2, 3)))


def _torchrun_embed(photos: Path, weights: Path, out: Path) -> subprocess.CompletedProcess[bytes]:
    argv = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "inceptionnet", "embed", str(photos),
            "--split", "train", "--model", str(weights), "--output", str(out), "--batch-size", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, env=env, capture_output=True)


def test_torchrun_embeds_each_image_once(photos: Path, tiny_classifier: Path, gallery: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    done = _torchrun_embed(photos, tiny_classifier, out)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    got, want = read_table(out), read_table(gallery)
    assert got.paths == want.paths  # every image once, sorted
    assert np.abs(got.vectors - want.vectors).max() < 1e-4
    assert not part_file(out, 0).exists() and not part_file(out, 1).exists()


@pytest.mark.slow  # two torchrun starts: about 30 s on two cores (the rerun alone: test_a_rerun_embeds_only_...)
def test_torchrun_rerun_finishes_what_is_missing(
    photos: Path, tiny_classifier: Path, gallery: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    done = _torchrun_embed(photos, tiny_classifier, out)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    want = read_table(gallery)
    table = parquet().read_table(out)
    parquet().write_table(table.slice(0, 5), out)  # 13 images lost: the rerun embeds them
    done = _torchrun_embed(photos, tiny_classifier, out)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    log = done.stderr.decode()
    assert "embedded 6 images (0 unreadable), 3 done before" in log  # rank 0: its 9 of the 18, 3 of them kept
    assert "embedded 7 images (0 unreadable), 2 done before" in log
    assert read_table(out).paths == want.paths
