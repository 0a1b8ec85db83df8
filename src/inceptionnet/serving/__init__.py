"""`inceptionnet serve`: a network behind HTTP, with a web page (docs/serving.md).

The model side (`service`: decoding uploads, batching forwards, results as JSON, Grad-CAM) and the
counters (`metrics`) import no web framework; `app` and `server` import FastAPI/Starlette and uvicorn
only when a server is built, so the base install runs every other command without the `serve` extra.
"""
