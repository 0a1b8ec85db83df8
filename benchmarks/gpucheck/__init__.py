"""The GPU check: ours against timm's networks on one CUDA GPU within a time budget (8 minutes at most),
written as JSON, a markdown table and a log (docs/performance.md, "GPU check").

    PYTHONPATH=src:benchmarks python3 -m gpucheck --out "$OUT/gpu-check"   (`make gpu-check`)
    PYTHONPATH=src:benchmarks python3 -m gpucheck --tiny --out /tmp/check  (CPU self-test of every path but CUDA's)

A developer's harness, outside the package: it uses inceptionnet as a library (perf.measure's timed
steps, perf.pipeline's loader timing) and needs nothing else but torch and, for the comparison, timm.

It first records the machine (nvidia-smi, /dev/shm, versions) and refuses to start without timm
(unless --no-timm). Sections, most important first: the bf16 matmul ceiling; training of each network
(bf16 autocast, channels_last, the largest batch up to 256 that fits both), eager; inference in fp32
and bf16 (ours fused); the training loader and transform `train` runs, on all cores, and JPEG decoding
plus that transform on the GPU; training under torch.compile, each network timed right after its own
compilation; inference through TensorRT. A section is skipped when the time it is expected to take no
longer fits the budget and stopped at its deadline (a few times that, or the budget's end); one that
fails is recorded with its error and the others go on. The report is rewritten after every section,
so a stopped run keeps what it measured.

  config.py   CheckConfig: what is measured, the budget, the estimates, the tiny CPU setting
  machine.py  what nvidia-smi, /dev/shm and the installed packages say, before anything runs
  state.py    Check: budget, section deadlines, networks built, the result as it grows
  steps.py    random batches, the largest batch that fits (out-of-memory errors told apart), TensorRT
              (the timed steps and rounds are the benchmark's, perf.measure)
  models.py   the network sections: ceiling, training (eager, compiled), inference (fp32, bf16, TensorRT)
  inputs.py   the input-pipeline sections (perf/pipeline.py) and their verdicts
  results.py  CheckResult, Section, NetworkTiming, Row: the typed result and its JSON
  report.py   the result's first fields, the markdown table, writing both
  run.py      run_check (the sections in order) and the command line
"""

from gpucheck.config import CheckConfig
from gpucheck.run import main, run_check

__all__ = ["CheckConfig", "main", "run_check"]
