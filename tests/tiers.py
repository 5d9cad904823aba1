"""What the two test tiers share (docs/testing.md): the quick tier is pytest's default, the
``slow`` tier runs with ``pytest tests -m slow``."""

import pytest


def example_counts(full: int, quick: int = 20):
    """``@pytest.mark.parametrize("examples", example_counts(200))`` for a hypothesis test that
    draws ``quick`` examples in the quick tier and ``full`` in the slow tier; the test passes
    ``examples`` to ``hypothesis.settings(max_examples=...)`` of its inner ``@given`` check."""
    return pytest.mark.parametrize("examples", [pytest.param(quick, id="quick"),
                                                pytest.param(full, id="full", marks=pytest.mark.slow)])
