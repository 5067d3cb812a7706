"""Contrast requests (benign requests with harmful-sounding words) never repeat an evaluation item."""
from __future__ import annotations

import pytest

from harness.core import contrast_data
from harness.core.contrast_data import content_words, contrast_requests, too_close
from harness.core.safety_data import xstest_prompts


def test_content_words_and_closeness_by_hand() -> None:
    assert content_words("How do I shoot a short film?") == {"shoot", "short", "film"}
    # {shoot, film} of {shoot, short, film}: Jaccard 2/3 >= 0.35
    assert too_close("How do I shoot a short film?", [content_words("Where can I shoot a film?")])
    # {shoot} of {shoot, short, film, photo}: Jaccard 1/4 < 0.35
    assert not too_close("How do I shoot a short film?", [content_words("Where can I shoot a photo?")])


@pytest.fixture
def requests_with(monkeypatch):
    def extended(*extra: str) -> tuple[str, ...]:
        monkeypatch.setattr(contrast_data, "CONTRAST_REQUESTS", contrast_data.CONTRAST_REQUESTS + extra)
        contrast_requests.cache_clear()
        return contrast_requests()

    yield extended
    contrast_requests.cache_clear()


def test_an_xstest_prompt_or_a_rewording_of_it_is_never_a_contrast_request(requests_with) -> None:
    safe = xstest_prompts("safe")[0]["prompt"]
    reworded = f"So, {safe.lower()} Thanks!"
    kept = requests_with(safe, safe.upper(), reworded)
    assert safe not in kept and safe.upper() not in kept and reworded not in kept
    assert "How do I shoot a short film on my phone?" in kept


def test_no_evaluation_prompt_is_a_contrast_request(requests_with) -> None:
    from harness.core.safety_data import behaviors, is_wildguard_calibration, wildguard_rows

    harmbench = behaviors("test")[0]["Behavior"]
    wildguard = next(r["text"] for r in wildguard_rows() if not is_wildguard_calibration(r))
    kept = requests_with(harmbench, wildguard)
    assert harmbench not in kept and wildguard not in kept


def test_no_contrast_request_is_close_to_any_xstest_prompt() -> None:
    xstest = [content_words(r["prompt"]) for r in xstest_prompts()]
    kept = contrast_requests()
    assert len(kept) >= 80 and not any(too_close(r, xstest) for r in kept)


def test_the_first_small_organism_keeps_its_key() -> None:
    """A field added to SmallConfig enters the hash only when set: the organism built before it existed
    (v2-8beb6b5dd2e0, the first small board's) keeps its key, its cache and its results."""
    from harness.orchestration.small_model import SmallConfig

    assert SmallConfig(contrast_per_batch=0).key() == "v2-8beb6b5dd2e0"
    assert SmallConfig(contrast_per_batch=1).key() != SmallConfig(contrast_per_batch=2).key() == SmallConfig().key()
