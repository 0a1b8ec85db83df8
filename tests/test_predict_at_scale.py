"""`predict --json OUT.jsonl` under torchrun: each image once, resumable after a kill; `eval` under torchrun."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.evaluation.sharding import check_sharding
from inceptionnet.inference.batchjob import lock_file, meta_file, part_file, read_records
from inceptionnet.models import Preprocessing
from inceptionnet.ranks import Ranks
from inceptionnet.weights import save_weights

SRC = Path(__file__).resolve().parents[1] / "src"
TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = create_model("inception_v3", num_classes=3, width=0.125)
    model.preprocessing = Preprocessing(input_size=75)
    return save_weights(model, tmp_path_factory.mktemp("weights") / "small.safetensors")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, make_image_folder: Callable[..., Path]) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("photos"), classes=3, train=4, val=3, corrupt=1)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _predict_argv(photos: Path, weights: Path, out: Path) -> list[str]:
    return ["predict", str(photos), "--model", str(weights), "--device", "cpu", "--batch-size", "2", "--json", str(out)]


def _torchrun(argv: list[str], nproc: int = 2) -> list[str]:
    return [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", "-m", "inceptionnet", *argv]


def _by_path(out: Path) -> dict[str, dict]:
    records = read_records(out)
    paths = [r["path"] for r in records]
    assert paths == sorted(set(paths)), "every image once, sorted"
    return {r["path"]: r for r in records}


def _probabilities(records: dict[str, dict]) -> dict[str, list[tuple[int, float]]]:
    return {p: [(t["index"], t["probability"]) for t in r["top"]] for p, r in records.items()}


def _assert_same(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert got.keys() == expected.keys()
    for path, record in expected.items():
        assert got[path]["error"] == record["error"]
        for a, b in zip(got[path]["top"], record["top"], strict=True):
            assert a["index"] == b["index"] and a["probability"] == pytest.approx(b["probability"], abs=1e-5)


def test_ranks_share_the_sorted_list_once() -> None:
    items = list(range(11))
    shares = [Ranks(r, 3, r).share(items) for r in range(3)]
    assert sorted(x for s in shares for x in s) == items and shares[1] == [1, 4, 7, 10]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory, photos: Path, small_weights: Path) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("single") / "out.jsonl"
    assert main(_predict_argv(photos, small_weights, out)) == 1  # the corrupt file fails, the others are written
    return _by_path(out)


def test_torchrun_predict_writes_each_image_once(
    photos: Path, small_weights: Path, one_process: dict[str, dict], tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    argv = [*_predict_argv(photos, small_weights, out), "--workers", "1"]  # decoded in a worker: same results
    done = subprocess.run(_torchrun(argv), env=_env(), capture_output=True)
    assert done.returncode != 0  # the corrupt file
    got = _by_path(out)
    assert len(got) == len(one_process) == 22
    assert sum(r["error"] is not None for r in got.values()) == 1
    _assert_same(got, one_process)
    assert not part_file(out, 0).exists() and not part_file(out, 1).exists()
    assert json.loads(meta_file(out).read_text())["model"] == "inception_v3"


@pytest.mark.slow  # two torchrun starts, a kill and a one-process run over 88 images: about 30 s
def test_a_killed_run_finishes_the_rest_on_rerun(photos: Path, small_weights: Path, tmp_path: Path) -> None:
    many = tmp_path / "many"
    for copy in range(4):  # enough images that the kill lands mid-way
        shutil.copytree(photos, many / f"copy{copy}")
    out = tmp_path / "out.jsonl"
    job = subprocess.Popen(
        _torchrun([*_predict_argv(many, small_weights, out), "--batch-size", "1"]),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(len(read_records(part_file(out, r))) >= 3 for r in (0, 1)):
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not out.exists(), "killed before the merge"
    done_before = sum(len(read_records(part_file(out, r))) for r in (0, 1))
    assert 3 <= done_before < 88
    # A line cut mid-write is dropped and redone.
    with part_file(out, 0).open("a") as f:
        f.write('{"path": "half')
    subprocess.run(_torchrun(_predict_argv(many, small_weights, out)), env=_env(), capture_output=True)
    single = tmp_path / "single.jsonl"
    main(_predict_argv(many, small_weights, single))
    _assert_same(_by_path(out), _by_path(single))


def test_a_single_process_rerun_predicts_only_what_is_missing(
    photos: Path, small_weights: Path, one_process: dict[str, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out.jsonl"
    main(_predict_argv(photos, small_weights, out))
    lines = out.read_bytes().split(b"\n")
    out.write_bytes(b"\n".join(lines[:5]) + b"\n" + lines[5][:10])  # 5 whole lines, then a cut one
    capsys.readouterr()
    main(_predict_argv(photos, small_weights, out))
    assert "predicted 17 images" in capsys.readouterr().err
    _assert_same(_by_path(out), one_process)


def test_an_output_of_another_network_is_refused(
    photos: Path, small_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out.jsonl"
    main(_predict_argv(photos, small_weights, out))
    assert main([*_predict_argv(photos, small_weights, out), "--top-k", "1"]) == 2
    assert "holds predictions of another network or options (top_k 3 -> 1)" in capsys.readouterr().err


@pytest.mark.slow  # a torchrun start and two evaluations: about 13 s
def test_torchrun_eval_equals_one_process(photos: Path, small_weights: Path, tmp_path: Path) -> None:
    argv = ["eval", "--data", str(photos / "train"), "--model", str(small_weights), "--device", "cpu", "--workers", "0"]
    argv += ["--per-class", "--batch-size", "2"]
    assert main([*argv, "--json", str(tmp_path / "one.json")]) == 0
    done = subprocess.run(_torchrun([*argv, "--json", str(tmp_path / "two.json")]), env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert two["images"] == one["images"] == 12 and one["skipped"] == 1
    assert (two["results"], two["skipped"]) == (one["results"], one["skipped"])


def test_a_split_evaluation_keeps_no_per_image_probabilities() -> None:
    check_sharding(Ranks(0, 1, 0), keep_predictions=True)
    with pytest.raises(ValueError, match="kept in one process only"):
        check_sharding(Ranks(1, 2, 1), keep_predictions=True)


def test_a_second_job_into_the_same_output_is_refused_while_the_first_writes(
    photos: Path, small_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preds.jsonl"
    fd = os.open(lock_file(out), os.O_RDWR | os.O_CREAT)  # what a running job holds
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert main(_predict_argv(photos, small_weights, out)) == 2
        assert "is being written by another predict job right now" in capsys.readouterr().err
        assert not out.exists()
    finally:
        os.close(fd)
    assert main(_predict_argv(photos, small_weights, out)) == 1  # free again: the job runs (1: the corrupt file)
    assert len(read_records(out)) == 22 and not lock_file(out).exists()
