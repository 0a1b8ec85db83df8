"""`python -m inceptionnet.perf.gpucheck`: the GPU check's command line."""

import sys

from inceptionnet.perf.gpucheck.run import main

if __name__ == "__main__":
    sys.exit(main())
