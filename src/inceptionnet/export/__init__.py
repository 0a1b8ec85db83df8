"""Export: BatchNorm folding, the fused inference blocks, export formats (ONNX, TorchScript, torch.export),
the ONNX cache, and running an ONNX file on ONNX Runtime or OpenVINO."""
