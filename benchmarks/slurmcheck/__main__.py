"""`python -m slurmcheck`: what `make slurm-check` runs (PYTHONPATH=src:benchmarks, the venv's Python).

Starts a two-node Slurm cluster on this machine in a temporary folder (slurmcheck.cluster), submits
the scripts of deploy/slurm/ (slurmcheck.claims), prints each claim with what the jobs showed, then
stops every daemon and job and removes the folder. Exit status 0 when every claim held, 1 when one
did not, 2 when Slurm or munge is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from slurmcheck import claims, scripts
from slurmcheck.cluster import LocalSlurm, changed, missing_commands, snapshot
from slurmcheck.jobs import submit

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slurmcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR (new or empty) and keep it: logs, job outputs, results"
    )
    return parser.parse_args(argv)


def timed(results: dict, name: str, claim: Callable[[], dict]) -> None:
    start = time.monotonic()
    result = claim()
    results[name] = {**result, "seconds": round(time.monotonic() - start, 1)}
    print(f"slurmcheck: {name}: ok {json.dumps(results[name])}", flush=True)


def show_changes(root: Path) -> None:
    """What the check changes in each script before submitting it: its sizes, nothing else."""
    train = scripts.train_changes(data=root / "data", out=root / "runs" / "run", epochs=claims.EPOCHS)
    out = root / "predictions" / "photos.jsonl"
    predict = scripts.predict_changes(images=root / "data", weights=root / "tiny.safetensors", out=out)
    for script, changes in ((scripts.TRAIN, train), (scripts.PREDICT, predict)):
        for old, new in changes.items():
            print(f"slurmcheck: {script.relative_to(ROOT)} as submitted: {old!r} -> {new!r}", flush=True)


def run_claims(slurm: LocalSlurm, root: Path, results: dict) -> None:
    show_changes(root)
    listening = slurm.listening_addresses()
    results["listening"] = listening
    everywhere = [a for addresses in listening.values() for a in addresses if not a.startswith("127.0.0.1:")]
    claims.require(not everywhere, f"daemons listen beyond 127.0.0.1: {listening}")
    setup = claims.Setup(
        slurm=slurm,
        data=claims.image_folder(root / "data"),
        env=claims.job_environment(root, Path(sys.executable).parent, ROOT / "src"),
    )
    run, reference = root / "runs" / "run", root / "runs" / "reference"
    warned = claims.start_warned(setup, run)
    reference_job = submit(slurm, setup.train_script(reference), "reference", env=setup.env)
    timed(results, "predict.sbatch writes each image once", lambda: claims.predict_each_image_once(setup, root))
    warning, requeue = "the time-limit warning stops with a checkpoint", "resubmitted and requeued, it continues"
    timed(results, warning, lambda: claims.stopped_by_the_warning(warned, run))
    step = results[warning]["stopped_at_step"]
    timed(results, requeue, lambda: claims.requeue_continues(setup, run, from_step=step))
    timed(
        results,
        "it ends as the uninterrupted run",
        lambda: claims.same_as_uninterrupted(run, reference_job, reference),
    )


def check(root: Path, results: dict) -> int:
    """The cluster up, the claims, the cluster down (however the claims end); 0 when all held."""
    start, status = time.monotonic(), 0
    try:
        with LocalSlurm(root) as slurm:
            print(f"slurmcheck: nodes {', '.join(slurm.nodes)} up in {time.monotonic() - start:.1f} s", flush=True)
            run_claims(slurm, root, results)
    except RuntimeError as err:  # ClaimError, JobError, ClusterError
        print(f"slurmcheck: FAILED: {err}", file=sys.stderr)
        status = 1
    results["seconds"] = round(time.monotonic() - start, 1)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    missing = missing_commands()
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        print(f"slurmcheck: {', '.join(missing)} not found: apt-get install {packages} (or make slurm-check)")
        return 2
    # SIGTERM (a CI timeout, `kill`) ends the check as Ctrl-C does: the cluster is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    root = args.keep or Path(tempfile.mkdtemp(prefix="slurmcheck-"))
    root.mkdir(parents=True, exist_ok=True)
    before, results = snapshot(), {}
    try:
        status = check(root, results)
        outside = changed(before, snapshot())
        if outside:
            print(f"slurmcheck: FAILED: files changed outside {root}: {outside}", file=sys.stderr)
            status = 1
        verdict = "passed" if status == 0 else "FAILED"
        print(f"slurmcheck: {verdict} in {results['seconds']} s; daemons and jobs stopped", flush=True)
        if args.keep:
            (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return status
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
