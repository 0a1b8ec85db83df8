"""Training with the paper's recipe.

- config: the run's settings (one frozen dataclass; each field says what a continued run may do with it);
  presets: its named values (paper, demo, finetune) and the configuration a command line asks for;
- loop: `train`, the table of contents of a run; inputs: its data; learner: its network, optimiser,
  weight average and wrappers; step: one optimiser step; validation: top-1/top-5 error per epoch;
- state: the run position; checkpoint: the training state a checkpoint holds, and restoring it; writer:
  the run folder's one writer (last.pt, previous.pt, best.pt, the model folder RUN/model); rundir: whether
  a command starts, continues or is refused in its output folder; runlock: the folder's owner (one command
  at a time);
- optim: RMSProp as TensorFlow computes it, the learning-rate schedule, the weight average;
- distributed: torchrun process groups; faults: stop signals and divergence; probe: dead features;
  runlog: metrics.jsonl, curves and TensorBoard.
"""
