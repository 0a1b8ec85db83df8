"""The command surface: every command's help and options, the version, and how bad invocations and bad input
end (argparse's usage error, or `error: ...` without a traceback; exit status 2 in both cases).

What each command computes is tested beside its subject (test_evaluation.py, test_study.py, ...)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inceptionnet import __version__
from inceptionnet.cli import build_parser, main

# Each command and what its help must name (a positional argument with choices shows them, not its name).
COMMANDS = {
    "summary": ("inception_resnet_v2_paper", "--input-size", "--num-classes", "--aux-logits", "--width"),
    "eval": ("--data", "--model", "--crops", "--batch-size", "--workers", "--json", "--data-only"),
    "bench": ("--model", "--batch-size", "--mode", "--dtype", "--reference", "--iters", "--device", "--json"),
    "train": ("--preset", "--resume", "--data", "--model", "--epochs", "--batch-size", "--lr", "--out-dir"),
    "predict": ("IMAGE", "--model", "--weights", "--top-k", "--json"),
    "explain": ("IMAGE", "--model", "--class", "--top-k", "--output", "--input-size", "--quadrant-check"),
    "export": ("inception_resnet_v2_paper", "--weights", "--format", "--dynamic-batch", "--output", "--input-size"),
    "study": ("residual", "scaling", "--data", "--out-dir", "--seeds", "--quick", "--threads", "--warmup-epochs"),
    "quantize": ("MODEL", "--calibration", "--output", "--images", "--method"),
    "shards": ("SRC", "DST", "--shard-size", "--seed"),
    "serve": (
        "MODEL_OR_RUN",
        "--weights",
        "--host",
        "--port",
        "--engine",
        "--max-batch",
        "--max-wait-ms",
        "--api-key",
        "--grpc-port",
        "--model-name",
        "--max-queue",
        "--header-timeout",
        "--index",
    ),
    "embed": ("--data", "--model", "--output", "--no-normalize", "--engine", "--nproc"),
    "similar": ("--index", "--model", "--top-k", "--json"),
    "calibrate": ("--data", "--output", "--score", "--known-kept"),
}


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`inceptionnet ARGV` in this process: (exit status, stdout, stderr), whether it returns or exits."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return status, out, err


def test_the_parser_has_every_command() -> None:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_naming_its_options(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main([command, "--help"], capsys)
    assert status == 0
    assert out.startswith(f"usage: inceptionnet {command}")
    missing = [option for option in COMMANDS[command] if option not in out]
    assert not missing, f"`inceptionnet {command} --help` does not mention {missing}"


def test_top_level_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(["--help"], capsys)
    assert status == 0 and all(command in out for command in COMMANDS)
    status, out, _ = run_main(["--version"], capsys)
    assert status == 0 and out.strip() == f"inceptionnet {__version__}"


def test_bench_names_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(["bench"], capsys)  # a network, unless it times the data loaders
    assert status == 2 and out == "" and "name the network: --model NAME or --int8 FOLDER (or --mode loader)" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["unknown"], "invalid choice: 'unknown'"),
        (["summary", "inception_v9"], "invalid choice: 'inception_v9'"),
        (["bench", "--model", "resnet50"], "invalid choice: 'resnet50'"),
        (["export", "inception_v4"], "the following arguments are required: --format"),
        (["eval", "--crops", "5"], "invalid choice: 5"),
        (["study", "depth"], "invalid choice: 'depth'"),
        (["study", "scaling", "--lr", "fast"], "invalid float value: 'fast'"),
        (["train", "--precision", "fp8"], "invalid choice: 'fp8'"),
        (["predict"], "the following arguments are required: IMAGE"),
    ],
)
def test_bad_invocations_are_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(argv, capsys)
    assert status == 2 and out == ""
    assert err.startswith("usage: inceptionnet") and message in err


def test_bad_input_is_an_error_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each is a ValueError raised by the library (or by a command's own checks) before any work starts.
    cases = [
        (["eval", "--data", str(tmp_path / "missing"), "--model", "inception_v4"], "does not exist"),
        (["eval", "--data", str(tmp_path)], "--model"),
        (["eval", "--model", "inception_v4"], "--data"),
        (["eval", "--data", str(tmp_path), "--model", "inception_v4:"], "names no weights"),
        (["study", "residual", "--model", "inception_resnet_v1"], "--model applies to the scaling study"),
        (["study", "scaling", "--seeds", "0"], "at least one seed"),
        (["shards", str(tmp_path / "missing"), str(tmp_path / "out")], "does not exist"),
        (["shards", str(tmp_path), str(tmp_path / "out"), "--shard-size", "0"], "at least 1 sample per shard"),
    ]
    for argv, message in cases:
        status, out, err = run_main(argv, capsys)
        assert status == 2 and out == "", argv
        assert err.startswith("error: ") and message in err and "Traceback" not in err, (argv, err)


def test_python_dash_m_runs_the_command() -> None:
    help_ = subprocess.run([sys.executable, "-m", "inceptionnet", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: inceptionnet")
    bad = subprocess.run(
        [sys.executable, "-m", "inceptionnet", "eval", "--data", "no/such/folder", "--model", "inception_v4"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: dataset folder no/such/folder does not exist")
