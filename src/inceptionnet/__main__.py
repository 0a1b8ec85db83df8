import sys

from inceptionnet.cli import main

sys.exit(main())
