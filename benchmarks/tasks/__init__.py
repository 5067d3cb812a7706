"""lm-evaluation-harness task configs for erosion-bench (see benchmarks/lm_eval_bridge.py)."""
