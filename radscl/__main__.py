"""Allow ``python -m radscl``."""

import sys

from radscl.cli import main

if __name__ == "__main__":
    sys.exit(main())
