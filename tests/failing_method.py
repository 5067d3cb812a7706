"""A user method whose hook raises: used by the reliability tests (loaded as 'tests.failing_method:Boom')."""
from methods.base import Method


class Boom(Method):
    """Raises in before_domain, as a buggy user method would."""

    name = "boom"

    def before_domain(self, ctx):
        raise RuntimeError("boom in before_domain")
