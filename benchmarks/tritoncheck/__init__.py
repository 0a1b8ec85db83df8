"""The Triton check: a real Triton Inference Server serves what `inceptionnet export --format triton
--triton-backend python` writes, and answers over HTTP and gRPC what `inceptionnet predict` answers.

    make triton-check                                       (.venv-triton, then python -m tritoncheck.local)
    PYTHONPATH=benchmarks .venv-triton/bin/python -m tritoncheck --http HOST:PORT --grpc HOST:PORT \\
        --model NAME [--reference predict.json] IMAGE...    (the protocol check against any server)

A developer's harness, outside the package. The server is the `tritonserver` binary that the
nvidia-pytriton wheel bundles (the Python backend only); the client is Triton's own tritonclient.
.venv-triton holds them (constraints-triton.txt pins the versions); inceptionnet's .venv makes the
network, the repository and the reference.

  sample.py    the random network (four named classes, 75x75, crop fraction 1) and its images (.venv)
  server.py    LocalTriton: the bundled tritonserver on 127.0.0.1, free ports, its own process group,
               stopped with its /dev/shm regions removed
  client.py    the contract read from the model's configuration, images, requests, statistics
  check.py     run_check: configuration, probabilities, top-k classification, dynamic batching
  __main__.py  the protocol check's command line
  local.py     `make triton-check`: sample, export, predict, server, check
"""
