"""What the GPU check looks at before it measures anything: the GPU as nvidia-smi sees it, the shared
memory the loader's workers pass batches through, the versions. Printed first and kept in the report,
so that a run that goes wrong still says on what."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
from typing import Any

import torch
import torchvision

from inceptionnet._version import __version__

NVIDIA_SMI_QUERY = "name,driver_version,memory.total,memory.used,mig.mode.current,power.limit,clocks.max.sm"
SHM = "/dev/shm"
SHM_LOW_GIB = 2.0  # below this, DataLoader workers are likely to die passing batches ("bus error")


def installed(package: str) -> str | None:
    """The installed version of `package`, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(device: torch.device) -> dict[str, str | None]:
    """The versions every number of the report depends on."""
    cuda = device.type == "cuda"
    return {
        "inceptionnet": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": installed("timm"),
        "torch_tensorrt": installed("torch-tensorrt"),
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if cuda else None,
        "python": platform.python_version(),
    }


def nvidia_smi() -> dict[str, Any]:
    """The GPUs nvidia-smi lists (one dict per GPU), or why it could not be asked."""
    if shutil.which("nvidia-smi") is None:
        return {"error": "nvidia-smi is not on the PATH"}
    command = ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as err:
        return {"error": f"{' '.join(command)} failed: {err}"}
    keys = NVIDIA_SMI_QUERY.split(",")
    gpus = [dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)) for line in done.stdout.splitlines()]
    return {"gpus": gpus}


def shared_memory() -> dict[str, Any]:
    """Size and free space of /dev/shm in GiB, or why it could not be read."""
    try:
        usage = shutil.disk_usage(SHM)
    except OSError as err:
        return {"error": f"{SHM}: {err}"}
    return {"total_gib": usage.total / 2**30, "free_gib": usage.free / 2**30}


def machine(device: torch.device) -> tuple[dict[str, Any], list[str]]:
    """What nvidia-smi and /dev/shm say, and notes on what in them threatens the run."""
    found = {"nvidia_smi": nvidia_smi(), "shm": shared_memory()}
    notes = []
    if device.type == "cuda" and "error" in found["nvidia_smi"]:
        notes.append(f"nvidia-smi: {found['nvidia_smi']['error']}; torch sees {torch.cuda.get_device_name(device)}")
    free = found["shm"].get("free_gib")
    if free is not None and free < SHM_LOW_GIB:
        notes.append(
            f"{SHM} has {free:.2f} GiB free: the loader's workers pass batches through it and may fail "
            f"(run the container with a larger --shm-size)"
        )
    return found, notes
