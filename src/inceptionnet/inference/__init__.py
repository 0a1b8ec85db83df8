"""Inference: a network made ready on the fastest engine, opened from any model name, predicting classes."""
