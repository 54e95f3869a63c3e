"""``python -m actorq`` runs the command line."""

import sys

from actorq.cli import main

sys.exit(main())
