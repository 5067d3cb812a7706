"""Orchestration: suite config, plan, runner, Ray scheduler, rescore, organism report, micro-world build."""
