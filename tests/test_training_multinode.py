"""Two torchrun agents on this machine, as on two nodes (`--nnodes 2`, c10d rendezvous on 127.0.0.1, one process
each): the run equals one agent with two processes; a worker killed on one agent restarts the group on both and
the run continues; without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 restarts are refused with that advice; predict
writes each image once; the variables of Kubeflow's training operator alone launch the run. The recipes of
docs/training.md, "Several GPUs and several machines"."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from inceptionnet import create_model
from inceptionnet.cli import main
from inceptionnet.inference.batchjob import read_records
from inceptionnet.models import Preprocessing
from inceptionnet.weights import save_weights
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # about 2 minutes on 2 cores

SRC = Path(__file__).resolve().parents[1] / "src"
TORCHRUN = Path(sys.executable).with_name("torchrun")
EPOCHS, STEPS = 3, 9  # 12 images on 2 processes of batch 2: 3 steps per epoch
WAIT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(data: Path, out: Path) -> list[str]:
    """`inceptionnet train` of a tiny network, a checkpoint and a metrics record after every step."""
    args = ["train", "--data", str(data), "--out-dir", str(out), "--model", "inception_v3", "--width", "0.125"]
    args += ["--input-size", "75", "--epochs", str(EPOCHS), "--batch-size", "2", "--num-workers", "0", "--no-progress"]
    args += ["--lr", "0.01", "--ema-decay", "0.9", "--log-every", "1", "--checkpoint-every", "1"]
    return [*args, "--device", "cpu"]


def _env(**changes: str) -> dict[str, str]:
    """This environment without any torchrun or Kubeflow settings, one thread per process, this source tree."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "TORCHELASTIC_", "TORCH_DISABLE"))}
    return {**keep, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC), **changes}


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as f:
        return subprocess.Popen(command, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def _two_agents(argv: list[str], folder: Path, env: dict[str, str], *options: str) -> list[subprocess.Popen]:
    """Two torchrun agents of one process each, meeting at a c10d rendezvous on 127.0.0.1; their output in
    folder/agent0.log and folder/agent1.log."""
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "two-nodes"]
    command = [str(TORCHRUN), "--nnodes", "2", "--nproc_per_node", "1", *rendezvous, *options, "-m", "inceptionnet"]
    return [_start([*command, *argv], env, folder / f"agent{i}.log") for i in range(2)]


def _finish(agents: list[subprocess.Popen]) -> list[int]:
    """The agents' exit statuses; any still running after WAIT_S is killed with its workers."""
    try:
        return [agent.wait(timeout=WAIT_S) for agent in agents]
    finally:
        for agent in agents:
            if agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()


def _logs(folder: Path) -> list[str]:
    return [(folder / f"agent{i}.log").read_text(errors="replace") for i in range(2)]


def _same_weights(a: Path, b: Path) -> None:
    x, y = read_checkpoint(a), read_checkpoint(b)
    assert x["position"] == y["position"]
    for key in ("model", "ema"):
        assert x[key].keys() == y[key].keys()
        for name in x[key]:
            assert torch.equal(x[key][name], y[key][name]), f"{key}.{name}"


def _each_record_once(folder: Path) -> list[dict]:
    records = read_metrics(folder / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(1, EPOCHS + 1))
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, STEPS + 1))
    return records


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_image_folder) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("multinode") / "data", train=6, val=2)


@pytest.fixture(scope="module")
def one_agent(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one torchrun agent with two processes: the same global batch and seed."""
    out = tmp_path_factory.mktemp("one-agent") / "run"
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "inceptionnet", *_train(data, out)]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_two_agents_train_as_one_agent_with_two_processes(data: Path, one_agent: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    agents = _two_agents(_train(data, out), tmp_path, _env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1"))
    assert _finish(agents) == [0, 0], _logs(tmp_path)
    _same_weights(out / "last.pt", one_agent / "last.pt")
    _same_weights(out / "best.pt", one_agent / "best.pt")
    assert [r["world_size"] for r in _each_record_once(out) if r["kind"] == "run"] == [2]


def _workers(agent: subprocess.Popen) -> list[int]:
    """The processes torchrun started for `agent` (its children with a RANK in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == agent.pid and b"\0RANK=" in b"\0" + (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers in /proc (Linux)")
def test_a_worker_killed_on_one_agent_restarts_both_and_the_run_continues(
    data: Path, one_agent: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    env = _env(TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1", LOGLEVEL="INFO")  # INFO: the agents log their restarts
    agents = _two_agents(_train(data, out), tmp_path, env, "--max-restarts", "1")
    try:
        deadline = time.monotonic() + WAIT_S
        while not (out / "last.pt").exists() and time.monotonic() < deadline:  # written after step 1 of 3
            time.sleep(0.02)
        killed = _workers(agents[1])
        assert len(killed) == 1, "the second agent's worker not found"
        os.kill(killed[0], signal.SIGKILL)
    finally:
        statuses = _finish(agents)
    logs = _logs(tmp_path)
    assert statuses == [0, 0], logs
    # The agent whose worker died counts a restart; the other sees the group change and restarts its worker too.
    assert "Worker group FAILED. 1/1 attempts left; will restart worker group" in logs[1]
    assert "Detected 1 new nodes from group_rank=" in logs[0] and "will restart worker group" in logs[0]
    assert f"{out} holds this run: continuing from {out / 'last.pt'}" in "".join(logs)
    _same_weights(out / "last.pt", one_agent / "last.pt")
    _each_record_once(out)


def test_restarts_without_a_fresh_store_per_attempt_are_refused_with_the_advice(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    agents = _two_agents(_train(data, out), tmp_path, _env(), "--max-restarts", "1")
    # torchrun exits with 1 whatever its workers exited with; the workers' refusal is status 2.
    assert _finish(agents) == [1, 1]
    for log in _logs(tmp_path):
        assert "error: torchrun --max-restarts on 2 machines would restart the group on a store" in log
        assert "--rdzv-backend c10d and the environment variable TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in log
        assert "exitcode: 2" in log
    assert not out.exists(), "refused before anything was written"


def test_the_training_operators_variables_alone_launch_the_run(data: Path, one_agent: Path, tmp_path: Path) -> None:
    """What Kubeflow's training operator sets in a PyTorchJob's master (node 0) and worker (node 1) pods, and a
    torchrun without options: its static rendezvous on the master's address."""
    out, port = tmp_path / "run", str(_free_port())
    agents = []
    for rank in range(2):
        operator = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2", "RANK": str(rank)}
        operator |= {"PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": port, "PET_NPROC_PER_NODE": "1"}
        operator |= {"PET_NNODES": "2", "PET_NODE_RANK": str(rank), "PYTHONUNBUFFERED": "0"}
        command = [str(TORCHRUN), "-m", "inceptionnet", *_train(data, out)]
        agents.append(_start(command, _env(**operator), tmp_path / f"agent{rank}.log"))
    assert _finish(agents) == [0, 0], _logs(tmp_path)
    _same_weights(out / "last.pt", one_agent / "last.pt")
    _each_record_once(out)


def test_two_agents_predict_each_image_once(tmp_path: Path, make_image_folder) -> None:
    photos = make_image_folder(tmp_path / "photos", classes=3, train=4, val=3)
    model = create_model("inception_v3", num_classes=3, width=0.125)
    model.preprocessing = Preprocessing(input_size=75)
    weights = save_weights(model, tmp_path / "small.safetensors")
    options = ["--model", str(weights), "--device", "cpu", "--engine", "torch", "--batch-size", "2"]
    out, alone = tmp_path / "out.jsonl", tmp_path / "alone.jsonl"
    agents = _two_agents(["predict", str(photos), *options, "--json", str(out)], tmp_path, _env())
    assert _finish(agents) == [0, 0], _logs(tmp_path)
    assert main(["predict", str(photos), *options, "--json", str(alone)]) == 0
    got, expected = read_records(out), read_records(alone)
    paths = [r["path"] for r in got]
    assert paths == sorted(set(paths)) and len(paths) == 21, "each image once, sorted"
    for a, b in zip(got, expected, strict=True):
        assert a["path"] == b["path"] and [t["index"] for t in a["top"]] == [t["index"] for t in b["top"]]
        for x, y in zip(a["top"], b["top"], strict=True):
            assert x["probability"] == pytest.approx(y["probability"], abs=1e-5)
