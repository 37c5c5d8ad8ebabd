"""What tests and benchmarks share: a local Anvil network with node processes, synthetic data."""
