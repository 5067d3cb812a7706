"""erosion-bench harness: the foundation, the training loop, orchestration and the CLI."""
