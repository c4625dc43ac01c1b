"""Medstream's benchmark suite: every figure measured from outside, through the real protocol.

Each benchmark is a command (`python -m bench.latency`, `bench.fanout`, `bench.subscription_scale`,
`bench.connections`, `bench.write_path`, and `bench.all` for all of them); see bench/README.md.
"""
