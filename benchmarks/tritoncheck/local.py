"""`python -m tritoncheck.local`: what `make triton-check` runs, with .venv-triton's Python.

In a temporary folder: the random network and images (tritoncheck.sample, with inceptionnet's venv),
`inceptionnet export --format triton --triton-backend python`, `inceptionnet predict --json` of the
images (the reference, PyTorch), then the bundled tritonserver on the repository (tritoncheck.server)
and the protocol check against it (tritoncheck.check). The server is stopped and its shared memory
removed however the check ends (a failure, Ctrl-C, SIGTERM). Then the same check, the same client and
images, against `inceptionnet serve` of the same weights with `--grpc-port` (its Open Inference
Protocol), stopped the same way.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tritoncheck.__main__ import main as check_main
from tritoncheck.server import LocalTriton, ServerError, free_ports

WEIGHTS = "net.safetensors"
IMAGES = "images"
REPOSITORY = "repository"
REFERENCE = "predict.json"
BENCHMARKS = Path(__file__).resolve().parents[1]


def run(step: str, command: list[str], *, quiet: bool = False, **env: str) -> None:
    """Run one command of the preparation, its time printed; a failure stops the check. `quiet`: its output
    is shown only if it fails."""
    start = time.monotonic()
    print(f"tritoncheck: {step}: {' '.join(command)}", flush=True)
    output = subprocess.PIPE if quiet else None
    done = subprocess.run(command, env={**os.environ, **env}, stdout=output, stderr=output, text=True, check=False)
    if done.returncode != 0:
        print(f"{done.stdout or ''}{done.stderr or ''}", file=sys.stderr)
        raise SystemExit(f"tritoncheck: FAILED: {step} exited with status {done.returncode}")
    print(f"tritoncheck: {step}: {time.monotonic() - start:.1f} s", flush=True)


def prepare(folder: Path, venv: Path, *, images: int, max_batch: int) -> str:
    """The network, its images, its Triton repository (Python backend) and predict's JSON; the model's name."""
    python, inceptionnet = str(venv / "bin" / "python"), str(venv / "bin" / "inceptionnet")
    weights, pictures, repository = str(folder / WEIGHTS), str(folder / IMAGES), folder / REPOSITORY
    sample = [python, "-m", "tritoncheck.sample", weights, pictures, "--count", str(images)]
    run("sample", sample, PYTHONPATH=str(BENCHMARKS))
    options = ["--format", "triton", "--triton-backend", "python", "--max-batch", str(max_batch)]
    run("export", [inceptionnet, "export", weights, *options, "--output", str(repository)])
    (model,) = (p.name for p in repository.iterdir())  # the repository holds one model
    classes = len((repository / model / "labels.txt").read_text().splitlines())
    options = ["--engine", "torch", "--device", "cpu", "--top-k", str(classes), "--json", str(folder / REFERENCE)]
    run("predict", [inceptionnet, "predict", "--model", weights, *options, pictures], quiet=True)
    return model


def serve_and_check(folder: Path, model: str) -> int:
    """Start the bundled tritonserver on the repository, run the protocol check, stop it; the check's status."""
    start = time.monotonic()
    with LocalTriton(folder / REPOSITORY, folder) as server:
        print(f"tritoncheck: tritonserver ready in {time.monotonic() - start:.1f} s (log {server.log})", flush=True)
        endpoints = ["--http", server.http, "--grpc", server.grpc, "--model", model]
        status = check_main([*endpoints, "--reference", str(folder / REFERENCE), str(folder / IMAGES)])
        if status != 0:
            print(server.log_tail(), file=sys.stderr)
        for line in server.log.read_text(errors="replace").splitlines():
            if "model.py" in line:  # what model.py logged: the engine it runs the ONNX file on
                print(f"tritoncheck: server log: {line}")
    removed = len(server.removed_shm)
    print(f"tritoncheck: server stopped (its process group ended; {removed} leftover /dev/shm regions removed)")
    return status


def serve_and_check_inceptionnet(folder: Path, venv: Path, model: str, max_batch: int) -> int:
    """`inceptionnet serve` of the same weights, with its gRPC service, and the same check against it."""
    http, grpc = free_ports(2)
    command = [str(venv / "bin" / "inceptionnet"), "serve", str(folder / WEIGHTS), "--engine", "torch"]
    command += ["--port", str(http), "--grpc-port", str(grpc), "--model-name", model, "--max-batch", str(max_batch)]
    command += ["--max-wait-ms", "50"]  # a batch waits for the requests still being decoded, up to 50 ms
    log = folder / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{http}/v2/health/ready", process, log)
        endpoints = ["--http", f"127.0.0.1:{http}", "--grpc", f"127.0.0.1:{grpc}", "--model", model]
        status = check_main([*endpoints, "--reference", str(folder / REFERENCE), str(folder / IMAGES)])
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server drains and exits; killed if it does not
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if status != 0:
        print(log.read_text(errors="replace")[-4000:], file=sys.stderr)
    print(f"tritoncheck: inceptionnet serve stopped (exit status {process.returncode})")
    return status


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise ServerError(f"inceptionnet serve was not ready in {timeout_s:g} s; its log:\n{log.read_text()[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritoncheck.local", description=__doc__.split("\n")[0])
    parser.add_argument("--venv", type=Path, default=Path(".venv"), help="inceptionnet's venv (default .venv)")
    parser.add_argument("--images", type=int, default=12, help="images to send (default 12)")
    parser.add_argument("--max-batch", type=int, default=8, help="the repository's --max-batch (default 8)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # unwinds: the server is stopped
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tritoncheck-") as tmp:
        model = prepare(Path(tmp), args.venv, images=args.images, max_batch=args.max_batch)
        try:
            status = serve_and_check(Path(tmp), model)
            print("tritoncheck: the same check against inceptionnet serve (its Open Inference Protocol)", flush=True)
            status |= serve_and_check_inceptionnet(Path(tmp), args.venv, model, args.max_batch)
        except ServerError as err:
            print(f"tritoncheck: FAILED: {err}", file=sys.stderr)
            return 1
    print(f"tritoncheck: {time.monotonic() - started:.1f} s in all")
    return status


if __name__ == "__main__":
    sys.exit(main())
