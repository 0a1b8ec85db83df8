"""The Kubernetes manifests of deploy/kubernetes/, checked offline: each object against the Kubernetes schemas
(kubernetes-validate), the TrainJob with Kubeflow Trainer's models, the PyTorchJob with the training operator's;
the command of each pod is run here: the training ones as two processes with the variables the operators set
(slow), the server's on 127.0.0.1 with its key from the environment."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import torch
import yaml
from kubeflow.training.api_client import ApiClient
from kubeflow.training.utils.utils import FakeResponse
from kubeflow_trainer_api.models.trainer_v1alpha1_train_job import TrainerV1alpha1TrainJob

from inceptionnet.serving.client import LocalServer
from inceptionnet.weights.runfolder import read_checkpoint, read_metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
VERSIONS = ("1.31", "1.37")  # the oldest Kubernetes that Kubeflow Trainer supports, and the newest schemas here
IMAGE = "registry.example.com/inceptionnet:0.1.0"
RUNS_CLAIM, RUNS_MOUNT = "inceptionnet-runs", "/runs"
WAIT_S = 300


def _documents(name: str) -> list[dict]:
    return list(yaml.safe_load_all((KUBERNETES / name).read_text()))


def _trainjob() -> dict:
    return _documents("trainjob.yaml")[0]


def _pytorchjob() -> dict:
    return _documents("pytorchjob.yaml")[0]


def _deployment() -> dict:
    return next(d for d in _documents("serve.yaml") if d["kind"] == "Deployment")


def _validate(document: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def _trainjob_pod(job: dict) -> dict:
    """The pod of a TrainJob's node as the runtime's patch and the trainer's fields make it (its runtime's own
    fields aside): what the Kubernetes schemas can check."""
    patched = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    spec = patched["template"]["spec"]["template"]["spec"]
    trainer = job["spec"]["trainer"]
    container = {key: trainer[key] for key in ("image", "command", "args", "env")}
    container |= {"name": spec["containers"][0]["name"], "resources": trainer["resourcesPerNode"]}
    container["volumeMounts"] = spec["containers"][0]["volumeMounts"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "node"},
        "spec": {**spec, "containers": [container]},
    }


def _pods() -> dict[str, dict]:
    """Every pod spec of the manifests, by manifest."""
    worker = _pytorchjob()["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    return {
        "trainjob.yaml": _trainjob_pod(_trainjob())["spec"],
        "pytorchjob.yaml": worker["spec"],
        "serve.yaml": _deployment()["spec"]["template"]["spec"],
    }


@pytest.mark.parametrize("name", ["serve.yaml", "runs-volume.yaml"])
def test_the_kubernetes_objects_validate_against_the_schemas(name: str) -> None:
    for document in _documents(name):
        _validate(document)


def test_the_trainjob_is_kubeflow_trainers_and_its_pod_validates() -> None:
    job = _trainjob()
    # The models drop what they do not know and refuse wrong types: a round trip that keeps every field.
    assert TrainerV1alpha1TrainJob.from_dict(job).to_dict() == job
    assert job["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    patched = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert patched["name"] == "node"  # the runtime's replicated job and container are both named node
    _validate(_trainjob_pod(job))


def test_the_pytorchjob_is_the_training_operators_and_its_pod_validates() -> None:
    job = _pytorchjob()
    client = ApiClient()
    assert client.sanitize_for_serialization(client.deserialize(FakeResponse(job), "KubeflowOrgV1PyTorchJob")) == job
    worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]
    container = worker["template"]["spec"]["containers"][0]
    # The operator finds the rendezvous port by these names.
    assert container["name"] == "pytorch" and container["ports"][0]["name"] == "pytorchjob-port"
    template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "worker"},
        "template": worker["template"],
    }
    _validate(template)


def _arg(args: list[str], option: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{option}="))


def test_the_training_jobs_restart_from_a_shared_folder() -> None:
    trainjob, pytorchjob = _trainjob()["spec"], _pytorchjob()["spec"]
    containers = {
        "trainjob.yaml": trainjob["trainer"],
        "pytorchjob.yaml": pytorchjob["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0],
    }
    for name, container in containers.items():
        assert {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"} in container["env"], name
        assert container["command"] == ["torchrun"] and container["args"][-6:-3] == ["-m", "inceptionnet", "train"]
        assert _arg(container["args"], "--out-dir").startswith(RUNS_MOUNT + "/"), name
    assert int(_arg(trainjob["trainer"]["args"], "--max-restarts")) >= 1
    assert _arg(trainjob["trainer"]["args"], "--rdzv-backend") == "c10d"
    assert pytorchjob["elasticPolicy"]["rdzvBackend"] == "c10d" and pytorchjob["elasticPolicy"]["maxRestarts"] >= 1
    # torchrun exits 1 for any failure of its workers, so only OnFailure restarts a pod whose workers stopped
    assert pytorchjob["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] == "OnFailure"


def test_every_pod_mounts_its_volumes_and_runs_the_image_the_containerfile_builds() -> None:
    assert f"-t {IMAGE} ." in (DEPLOY / "Containerfile").read_text()
    for name, pod in _pods().items():
        volumes = {v["name"]: v for v in pod["volumes"]}
        container = pod["containers"][0]
        assert container["image"] == IMAGE, name
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, f"{name}: no volume {mount['name']}"
            if mount["mountPath"] == RUNS_MOUNT:
                assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == RUNS_CLAIM
    claim = _documents("runs-volume.yaml")[0]
    assert claim["metadata"]["name"] == RUNS_CLAIM and claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_containerfile_installs_what_the_pods_run() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    assert 'pip install --constraint constraints.txt ".[serve]"' in text
    assert "FROM docker.io/library/python:3.11-slim" in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'inceptionnet = "inceptionnet.cli:main"' in pyproject and "\nserve = [" in pyproject


def test_the_server_serves_with_its_key_from_the_secret(tiny_classifier: Path, tmp_path: Path) -> None:
    deployment = _deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["inceptionnet", "serve"]
    args = container["args"]
    assert args[1:] == ["--host", "0.0.0.0", "--port", str(container["ports"][0]["containerPort"])]
    assert not any(a.startswith("--api-key") for a in args), "the key comes from the environment, not a flag"
    key = next(e for e in container["env"] if e["name"] == "INCEPTIONNET_API_KEY")["valueFrom"]["secretKeyRef"]
    assert (
        f"kubectl create secret generic {key['name']} --from-literal={key['key']}="
        in (KUBERNETES / "serve.yaml").read_text()
    )
    service = next(d for d in _documents("serve.yaml") if d["kind"] == "Service")
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]

    with pytest.MonkeyPatch.context() as patch:  # on 127.0.0.1 here; 0.0.0.0 is the pod's own address
        patch.setenv("INCEPTIONNET_API_KEY", "key-from-the-secret")
        patch.setenv("OMP_NUM_THREADS", "1")
        server = LocalServer(tiny_classifier, ["--host", "127.0.0.1", "--engine", "torch"], tmp_path / "serve.log")
    try:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "http"
            assert server.call(container[probe]["httpGet"]["path"])[0] == 200, probe
        assert server.call("/v1/model")[0] == 401
        assert server.call("/v1/model", headers={"Authorization": "Bearer key-from-the-secret"})[0] == 200
    finally:
        server.stop()


# The training pods' commands, run here as two processes of one worker each (slow)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of $(NAME) in a container's args by its environment ($$ escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1) or "", m.group(0)), arg)


def _sized(args: list[str], data: Path, out: Path) -> list[str]:
    """The pod's arguments, but for the sizes: a few images, a tiny network on the CPU, one process per node."""
    tiny = ["--model", "inception_v3", "--width", "0.125", "--input-size", "75", "--epochs", "2", "--batch-size", "2"]
    tiny += ["--num-workers", "0", "--no-progress", "--lr", "0.01", "--ema-decay", "0.9", "--device", "cpu"]
    changes = {
        "--data=/data/imagenet": [f"--data={data}"],
        "--out-dir=/runs/irv2": [f"--out-dir={out}"],
        "--checkpoint-every=500": ["--checkpoint-every=1", *tiny],
        "--nproc-per-node=8": ["--nproc-per-node=1"],
    }
    return [new for arg in args for new in changes.get(arg, [arg])]


def _run_pods(container: dict, envs: list[dict[str, str]], data: Path, out: Path) -> None:
    """The container's command as one process per pod, each with its environment; all must exit 0."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "TORCHELASTIC_", "TORCH_DISABLE"))}
    base |= {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    base |= {"PYTHONPATH": str(ROOT / "src")} | {e["name"]: e["value"] for e in container["env"]}
    pods = []
    for i, env in enumerate(envs):
        full = base | env
        argv = [*container["command"], *(_expand(a, full) for a in _sized(container["args"], data, out))]
        with (out.parent / f"pod{i}.log").open("w") as log:
            pods.append(subprocess.Popen(argv, env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        statuses = [pod.wait(timeout=WAIT_S) for pod in pods]
    finally:
        for pod in pods:
            if pod.poll() is None:
                os.killpg(pod.pid, 9)
                pod.wait()
    logs = [(out.parent / f"pod{i}.log").read_text() for i in range(len(pods))]
    assert statuses == [0] * len(pods), logs


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, make_image_folder) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("pods") / "data", train=4, val=2)


@pytest.fixture(scope="module")
def trainjob_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TrainJob's command on two nodes, with what the torch-distributed runtime sets: PET_* alone."""
    trainer, out = _trainjob()["spec"]["trainer"], tmp_path_factory.mktemp("trainjob") / "run"
    port, nodes = str(_free_port()), trainer["numNodes"]
    env = {"PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": port}
    _run_pods(trainer, [{**env, "PET_NODE_RANK": str(rank)} for rank in range(nodes)], data, out)
    return out


@pytest.mark.slow  # two processes training a tiny network: about 30 s
def test_the_trainjob_command_trains_with_the_runtimes_variables(trainjob_run: Path) -> None:
    records = read_metrics(trainjob_run / "metrics.jsonl")
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]
    assert [r["world_size"] for r in records if r["kind"] == "run"] == [2]


@pytest.mark.slow  # two processes training a tiny network: about 30 s
def test_the_pytorchjob_command_trains_with_the_operators_variables(trainjob_run: Path, data: Path, tmp_path) -> None:
    job = _pytorchjob()["spec"]
    elastic, worker = job["elasticPolicy"], job["pytorchReplicaSpecs"]["Worker"]
    env = {
        "PYTHONUNBUFFERED": "0",
        "PET_RDZV_BACKEND": elastic["rdzvBackend"],
        "PET_RDZV_ENDPOINT": f"127.0.0.1:{_free_port()}",  # worker 0's address and port, in the cluster
        "PET_NNODES": f"{elastic['minReplicas']}:{elastic['maxReplicas']}",
        "PET_MAX_RESTARTS": str(elastic["maxRestarts"]),
    }
    out = tmp_path / "run"
    _run_pods(worker["template"]["spec"]["containers"][0], [env] * worker["replicas"], data, out)
    a, b = read_checkpoint(out / "last.pt"), read_checkpoint(trainjob_run / "last.pt")
    assert a["position"] == b["position"]
    for name in a["model"]:  # the same run, whichever operator started it
        assert torch.equal(a["model"][name], b["model"][name]), name
