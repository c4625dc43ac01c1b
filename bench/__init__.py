"""Medstream's benchmark suite: every figure measured from outside, through the real protocol.

Each benchmark is a command (`python -m bench.latency`, `bench.fanout`, `bench.subscription_scale`,
`bench.connections`, `bench.write_path`, `bench.all` for all of them, and `bench.instructions`, which counts
CPU instructions under valgrind); see bench/README.md.
"""
