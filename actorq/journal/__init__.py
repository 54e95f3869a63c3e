"""Storage: the append-only journal and the tasks projection, behind the ``Journal`` protocol."""
