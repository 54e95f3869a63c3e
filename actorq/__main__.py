"""``python -m actorq`` runs the command line; so does the one-file executable."""

import sys

from actorq.cli import main
from actorq.frozen import die_with_bootloader

die_with_bootloader()
sys.exit(main())
