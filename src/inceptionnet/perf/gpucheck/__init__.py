"""The GPU check: ours against timm's networks on one CUDA GPU within a time budget (8 minutes at most),
written as JSON and a markdown table (docs/performance.md, "GPU check").

    python -m inceptionnet.perf.gpucheck --out gpu-check          (`make gpu-check`)
    python -m inceptionnet.perf.gpucheck --tiny --out /tmp/check  (CPU self-test of every path but CUDA's)

Sections, most important first: the bf16 matmul ceiling; training of each network (bf16 autocast,
channels_last, the largest batch up to 256 that fits both), eager; inference in fp32 and bf16 (ours
fused); the JPEG training loader on all cores and JPEG decoding on the GPU; training under
torch.compile; inference through TensorRT. A section is skipped when the time it is expected to take
no longer fits the budget and stopped when it overruns it; one that fails is recorded with its error
and the others go on. The report is rewritten after every section, so a stopped run keeps what it measured.

  config.py   CheckConfig: what is measured, the budget, the tiny CPU setting
  state.py    Check: budget, sections, networks built, the report as it grows; the deadline
  steps.py    random batches, the largest batch that fits, first calls, TensorRT (the timed
              steps and rounds are the benchmark's, perf.measure)
  models.py   the network sections: ceiling, training (eager, compiled), inference (fp32, bf16, TensorRT)
  inputs.py   the input-pipeline sections (perf/pipeline.py) and their verdicts
  report.py   the JSON and the markdown table
  run.py      run_check (the sections in order) and the command line
"""

from inceptionnet.perf.gpucheck.config import CheckConfig
from inceptionnet.perf.gpucheck.run import main, run_check

__all__ = ["CheckConfig", "main", "run_check"]
