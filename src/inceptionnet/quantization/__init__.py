"""int8: calibration images, GPTQ rounding, quantize_model and the int8 folder it writes."""
