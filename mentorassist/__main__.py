"""`python -m mentorassist`: see mentorassist.cli."""

import sys

from mentorassist.cli import main

sys.exit(main())
