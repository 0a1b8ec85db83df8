"""Model folders on the Hugging Face hub: `weights="hf-hub:ORG/NAME"`.

A hub repository that holds a model folder (artifact.py: config.json + model.safetensors, e.g. a
run's `model/` uploaded with `hf upload ORG/NAME runs/X/model`) is fetched into the hub's own cache
by `huggingface_hub.hf_hub_download`, with its usual cache, token and offline rules
(`HF_HUB_CACHE`, `HF_TOKEN`, `HF_HUB_OFFLINE`), and then read as a local model folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from inceptionnet.weights.files import CONFIG_FILE, WEIGHTS_FILE, first_sentence
from inceptionnet.weights.tags import WeightsError

HUB_PREFIX = "hf-hub:"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_hub_address(weights: str) -> bool:
    return weights.startswith(HUB_PREFIX)


def hub_model_id(weights: str | None) -> str | None:
    """ORG/NAME of the hub repository `weights` names (`hf-hub:ORG/NAME`); None for anything else."""
    repo_id = weights.removeprefix(HUB_PREFIX) if weights is not None and is_hub_address(weights) else ""
    return repo_id if _REPO_ID.match(repo_id) else None


def download_model_folder(address: str) -> Path:
    """The local snapshot folder of `hf-hub:ORG/NAME` holding its config.json and model.safetensors."""
    repo_id = address.removeprefix(HUB_PREFIX)
    if not _REPO_ID.match(repo_id):
        raise WeightsError(f"{address!r} does not name a hub repository; write hf-hub:ORG/NAME")
    try:
        from huggingface_hub import hf_hub_download

        config = Path(hf_hub_download(repo_id=repo_id, filename=CONFIG_FILE))
        hf_hub_download(repo_id=repo_id, filename=WEIGHTS_FILE)  # the same snapshot folder as config.json
    except Exception as err:  # offline and not cached, no such repository, no access: one actionable message
        raise WeightsError(
            f"cannot get {address} ({type(err).__name__}: {first_sentence(err)}). It must be a Hugging Face model "
            f"repository holding {CONFIG_FILE} and {WEIGHTS_FILE} written by inceptionnet (a run's model/ folder). "
            f"Without network access, fetch it elsewhere (hf download {repo_id} --local-dir DIR) and pass DIR instead"
        ) from None
    return config.parent
