"""The Slurm scripts of deploy/slurm/ are the ones the docs show, and the Slurm check (`make slurm-check`,
benchmarks/slurmcheck, which submits them to a real Slurm) changes nothing in them but their sizes. The check
itself needs Debian's slurm-wlm and munge and runs in .ci/run, not here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from slurmcheck import scripts
from slurmcheck.cluster import hardware, slurm_conf

ROOT = Path(__file__).resolve().parents[1]


def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown, flags=re.DOTALL)


def test_the_docs_show_the_scripts_that_the_check_submits() -> None:
    training = (ROOT / "docs" / "training.md").read_text()
    assert scripts.TRAIN.read_text() in _code_blocks(training)
    assert "deploy/slurm/predict.sbatch" in training and "make slurm-check" in training


@pytest.mark.parametrize(
    ("script", "changes"),
    [
        (scripts.TRAIN, scripts.train_changes(data=Path("/d"), out=Path("/o"), epochs=2)),
        (scripts.PREDICT, scripts.predict_changes(images=Path("/i"), weights=Path("/w"), out=Path("/o.jsonl"))),
    ],
    ids=["train", "predict"],
)
def test_the_check_changes_only_sizes(script: Path, changes: dict[str, str]) -> None:
    text = script.read_text()
    changed = scripts.sized(text, changes)
    kept = [line for line in text.splitlines() if not any(old in line for old in changes)]
    assert kept == [line for line in changed.splitlines() if line in kept]
    assert "#SBATCH --nodes=2 --ntasks-per-node=1" in changed and "srun torchrun" in changed
    with pytest.raises(scripts.ScriptError, match="occurs 0 times"):
        scripts.sized(text, {"--no-such-option": ""})


def test_the_scripts_are_bash() -> None:
    for script in (scripts.TRAIN, scripts.PREDICT):
        assert script.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_cluster_keeps_every_file_in_its_folder_and_uses_no_cgroups(tmp_path: Path) -> None:
    hw = {"NodeName": "host", "CPUs": "2", "SocketsPerBoard": "1", "CoresPerSocket": "2", "ThreadsPerCore": "1"}
    conf = slurm_conf(tmp_path, {"host": 7001, "host-2": 7002}, 7000, {**hw, "RealMemory": "1000"})
    paths = re.findall(r"=(/\S+)", conf)
    assert paths and all(p.startswith(str(tmp_path)) or p == "/bin/true" for p in paths), paths
    for line in ("ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres"):
        assert line in conf.splitlines()
    assert "CommunicationParameters=NoCtldInAddrAny,NoInAddrAny" in conf and "SlurmctldHost=host(127.0.0.1)" in conf
    assert conf.count("NodeAddr=127.0.0.1") == 2


def test_the_node_is_this_machine_as_slurmd_describes_it(debian_tool) -> None:
    debian_tool("slurmd", "slurmd")
    hw = hardware()
    assert {"NodeName", "CPUs", "RealMemory", "CoresPerSocket"} <= hw.keys()
    assert shutil.which("sbatch") and shutil.which("munged"), "apt-get install slurm-wlm munge"


def test_make_and_ci_run_the_check() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^slurm-check:.*\n(\t.*\n)*\t.*-m slurmcheck", makefile, flags=re.MULTILINE)
    assert "make slurm-check" in (ROOT / ".ci" / "run").read_text()
