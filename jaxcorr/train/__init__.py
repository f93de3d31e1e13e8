"""One training loop for every task: state, sharding, checkpoints, metric writers, the loop."""
