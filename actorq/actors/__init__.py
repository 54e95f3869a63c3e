"""The actor runtime (core.py) and the actors of a node, one module each."""
