"""Fixtures shared by the test files: threads, tiny image folders, tiny training configurations, BN statistics,
and the development machines' shared data (absent on a user's machine: the tests that need it skip)."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from inceptionnet import create_model
from inceptionnet.cpu import cpu_features
from inceptionnet.data import DEMO_DATA
from inceptionnet.models import Preprocessing
from inceptionnet.serving.client import LocalServer
from inceptionnet.training.config import TrainConfig
from inceptionnet.training.runlog import RunLog
from inceptionnet.weights import save_weights

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def debian_tool() -> Callable[[str, str], str]:
    """`debian_tool(command, package)`: the path of a command a test runs against (promtool, ...). Without it
    the test is skipped, naming the package, except under .ci/run (INCEPTIONNET_CI=1), which installs it:
    there its absence fails."""

    def find(command: str, package: str) -> str:
        path = shutil.which(command)
        if path is None:
            message = f"{command} is not installed: apt-get install {package}"
            if os.environ.get("INCEPTIONNET_CI") == "1":
                pytest.fail(message)
            pytest.skip(message)
        return path

    return find


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module's tests on one torch thread: on a busy 2-core machine two threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sigterm() -> None:
    signal.raise_signal(signal.SIGTERM)


@pytest.fixture
def after_step() -> Callable[..., AbstractContextManager[None]]:
    """`with after_step(n): train(...)`: once step n is logged (RunLog.step), SIGTERM arrives, as a scheduler's
    would in the middle of an epoch; `after_step(n, then=crash)` calls `crash()` there instead (a crash that
    raises). RunLog.step is itself again after the block."""

    @contextmanager
    def after(step: int, then: Callable[[], None] = _sigterm) -> Iterator[None]:
        real = RunLog.step

        def step_then_signal(self: RunLog, logged: int, **kw: object) -> None:
            real(self, logged, **kw)
            if logged == step:
                then()

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(RunLog, "step", step_then_signal)
            yield

    return after


@pytest.fixture
def native_bf16() -> None:
    """Skip the test where this CPU has no native bf16 (AVX512-BF16 or AMX): there bf16 is refused or emulated,
    many times slower (inceptionnet.cpu; ONEDNN_MAX_CPU_ISA=AVX2 simulates such a CPU)."""
    cpu = cpu_features()
    if not cpu.bf16:
        pytest.skip(f"needs a CPU with AVX512-BF16 or AMX; this one is {cpu.describe()}")


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """The 1,000 ImageNet sample images of ../shared/data (skips the test where they are absent)."""
    folder = SHARED_DATA / "imagenet-sample"
    if not folder.is_dir():
        pytest.skip(f"needs {folder} (real ImageNet images; present on the development machines only)")
    return folder


@pytest.fixture(scope="session")
def cifar10() -> Path:
    """CIFAR-10 as ImageFolders (train/, test/) from ../shared/data (skips the test where it is absent)."""
    folder = SHARED_DATA / "cifar10"
    if not (folder / "train").is_dir():
        pytest.skip(f"needs {folder} (present on the development machines only)")
    return folder


def _image_folder(root: Path, *, classes: int = 2, train: int = 8, val: int = 4, corrupt: int = 0) -> Path:
    names = sorted(p.name for p in (DEMO_DATA / "train").iterdir())[:classes]
    for split, count in (("train", train), ("val", val)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for src in sorted((DEMO_DATA / split / name).iterdir())[:count]:
                shutil.copy(src, root / split / name / src.name)
    for i in range(corrupt):
        (root / "train" / names[0] / f"corrupt{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def make_image_folder() -> Callable[..., Path]:
    """`make_image_folder(root, classes=2, train=8, val=4, corrupt=0)`: root/train/<class>/*.jpg and
    root/val/<class>/*.jpg copied from the built-in demo data, plus `corrupt` unreadable files in the
    first training class; returns root."""
    return _image_folder


def _train_config(data: Path, out: Path, **changes: object) -> TrainConfig:
    # inception_v3 at 1/8 width and 75 px is the fastest network of the package and has an aux head.
    cfg = TrainConfig(
        data=str(data),
        out_dir=str(out),
        model="inception_v3",
        width=0.125,
        input_size=75,
        epochs=2,
        batch_size=3,
        num_workers=0,
        lr=0.01,
        ema_decay=0.9,
        progress=False,
    )
    return replace(cfg, **changes)


@pytest.fixture(scope="session")
def make_train_config() -> Callable[..., TrainConfig]:
    """`make_train_config(data, out, **changes)`: a TrainConfig that trains in seconds (Inception-v3 at
    1/8 width, 75 px, 2 epochs, batch 3, weight average 0.9), with `changes` applied."""
    return _train_config


def _randomize_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@pytest.fixture(scope="session")
def randomize_bn() -> Callable[..., nn.Module]:
    """`randomize_bn(model, seed=1)`: non-trivial BN statistics and affine parameters, in place (returns the
    model), so that folding, loading and parity tests exercise them."""
    return _randomize_bn


@pytest.fixture(scope="session", autouse=True)
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ONNX exports of `inceptionnet.inference.engines` go to a folder of this test session, not ~/.cache."""
    folder = tmp_path_factory.mktemp("engine-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INCEPTIONNET_ENGINE_CACHE", str(folder))
        yield folder


# `inceptionnet serve` in a subprocess, on a tiny network (tests/test_serve.py, tests/test_serve_page.py)


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An eighth-width Inception-v3 of three named classes at 75 px, as a weights file."""
    torch.manual_seed(0)
    model = create_model("inception_v3", width=0.125, num_classes=3)
    model.preprocessing = Preprocessing(input_size=75)
    model.class_names = ("cat", "dog", "bird")
    return save_weights(model, tmp_path_factory.mktemp("served") / "tiny.safetensors")


@pytest.fixture(scope="session")
def start_server(
    tiny_classifier: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LocalServer]]:
    """Start `inceptionnet serve` on the tiny network (torch, one thread) with extra options (`model=`: another
    network's weights instead); every server is stopped at the end."""
    started: list[LocalServer] = []
    folder = tmp_path_factory.mktemp("serve-logs")

    def start(*options: str, model: Path | None = None) -> LocalServer:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OMP_NUM_THREADS", "1")
            log = folder / f"serve-{len(started)}.log"
            started.append(LocalServer(model or tiny_classifier, ["--engine", "torch", *options], log))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server: Callable[..., LocalServer]) -> LocalServer:
    """The server the tests share: batches of up to 8 waiting 150 ms, 1 MB uploads, 1 MP images."""
    return start_server("--max-batch", "8", "--max-wait-ms", "150", "--max-upload-mb", "1", "--max-megapixels", "1")
