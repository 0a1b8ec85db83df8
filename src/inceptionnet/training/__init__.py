"""Training: the paper's recipe (configuration, optimiser, loop), checkpoints, distribution, faults, the run log."""
