"""`python -m tonerwatch` is the `tonerwatch` command."""

import sys

from tonerwatch.cli import main

sys.exit(main())
