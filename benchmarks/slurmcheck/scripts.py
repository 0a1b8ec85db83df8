"""The Slurm scripts that docs/training.md shows (deploy/slurm/), as the check submits them: as written,
but for their sizes.

Each change replaces one piece of text that occurs exactly once in the script; everything else (the
#SBATCH options, the rendezvous, `srun torchrun`, the store variable) is submitted as it is.
"""

from __future__ import annotations

from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "slurm"
TRAIN = DEPLOY / "train.sbatch"
PREDICT = DEPLOY / "predict.sbatch"

# A network and run that train in seconds on a CPU: Inception-v3 at 1/8 width and 75 px, batches of 2 per
# process, a checkpoint after every step and a metrics record for every step.
TINY_RUN = (
    "--model inception_v3 --width 0.125 --input-size 75 --batch-size 2 --num-workers 0 --no-progress "
    "--lr 0.01 --ema-decay 0.9 --log-every 1"
)


class ScriptError(ValueError):
    """A size change does not apply to the script: the script changed, so must the change."""


def sized(script: str, changes: dict[str, str]) -> str:
    """`script` with each key of `changes` (found exactly once) replaced by its value."""
    for old, new in changes.items():
        count = script.count(old)
        if count != 1:
            raise ScriptError(
                f"{old!r} occurs {count} times in the script, not once; update slurmcheck.scripts to the script"
            )
        script = script.replace(old, new)
    return script


def train_changes(*, data: Path, out: Path, epochs: int) -> dict[str, str]:
    """From 8 GPUs per node on ImageNet to one CPU process per node on a few images."""
    return {
        " --gpus-per-node=8": "",
        "--nproc_per_node=8": "--nproc_per_node=1",
        "--data /data/imagenet": f"--data {data}",
        "--out-dir /shared/runs/irv2": f"--out-dir {out}",
        "--checkpoint-every 500": f"--checkpoint-every 1 --epochs {epochs} {TINY_RUN}",
    }


def predict_changes(*, images: Path, weights: Path, out: Path) -> dict[str, str]:
    """From 8 GPUs per node to one CPU process per node, on a folder of a few images."""
    return {
        " --gpus-per-node=8": "",
        "--nproc_per_node=8": "--nproc_per_node=1",
        "predict /data/photos": f"predict {images}",
        "--model /shared/runs/irv2": f"--model {weights} --device cpu --engine torch --batch-size 2",
        "--json /shared/predictions/photos.jsonl": f"--json {out}",
    }
