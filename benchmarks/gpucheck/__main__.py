"""`python -m gpucheck`: the GPU check's command line."""

import sys

from gpucheck.run import main

if __name__ == "__main__":
    sys.exit(main())
