"""Inference: prediction with class names, fusion into a fast inference network, export."""
