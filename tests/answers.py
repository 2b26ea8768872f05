"""Comparing one query's answers from two surfaces (service, CLI, HTTP, bot).

A server searches queries in batches: its warm-up search ("a photo") can share a batch with the first request, and
a text encoded in a batch of two differs from the same text encoded alone in the last bits of float32 (1.5e-7 in
the joint model's text vector), so a score printed to six decimals may differ by one in the last digit. Two
answers are the same when they list the same photos in the same order, with the same metadata and tags, and scores
equal to within that noise.
"""

from __future__ import annotations

from typing import Any

import pytest

SCORE_NOISE = 1e-5


def assert_same_results(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """``got`` and ``expected`` (the ``results`` of two answers' JSON) name the same hits, scores within noise."""
    assert [{k: v for k, v in hit.items() if k != "score"} for hit in got] == [
        {k: v for k, v in hit.items() if k != "score"} for hit in expected
    ]
    assert [hit["score"] for hit in got] == pytest.approx([hit["score"] for hit in expected], abs=SCORE_NOISE)


def assert_same_answer(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Two whole answers (a search's JSON): every field equal, the results' scores within noise."""
    assert {k: v for k, v in got.items() if k != "results"} == {k: v for k, v in expected.items() if k != "results"}
    assert_same_results(got["results"], expected["results"])
