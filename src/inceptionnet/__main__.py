"""`python -m inceptionnet`: the same command line as `inceptionnet`."""

import sys

from inceptionnet.cli import main

sys.exit(main())
