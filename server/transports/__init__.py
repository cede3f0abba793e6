"""Transports at the edge: they move a session's messages over a connection and nothing else."""
