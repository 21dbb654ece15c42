"""`python -m streamvis ...` (used by `torchrun -m streamvis train ...`)."""

import sys

from streamvis.cli import main

sys.exit(main())
