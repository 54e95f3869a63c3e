"""actorq: a durable background task queue on an actor runtime."""
