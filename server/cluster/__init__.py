"""Cluster mode: named channels shared by several `signstream serve` processes through Redis.

One process owns a channel at a time (a lease with a short TTL, lease.py): it runs the channel's
session, engine work and retarget, and publishes what viewers elsewhere need (wire.py) on the
channel's topic; every other process with viewers of the channel relays those messages to them
through the same per-viewer outboxes, and sends their captions to the owner (channel.py). The bus
(bus.py) is one Redis connection for publishing and one for subscriptions per process; node.py
holds a process's cluster state, health and metrics. docs/cluster.md is the user's side.
"""
