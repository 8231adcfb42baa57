"""Every bad configuration or call in the corpus raises a clear weft error, promptly."""

from __future__ import annotations

import pytest

from bad_inputs import CASES, PENDING, installed, run_case

# Known gaps, kept visible: each is a real unclear error that the owning file must fix.
KNOWN: dict[str, str] = dict(PENDING)  # case name -> why it is not yet clear (xfail, strict)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 150
    assert len({c.name for c in CASES}) == len(CASES)
    assert set(KNOWN) <= {c.name for c in CASES}
    assert {c.area for c in CASES} >= {"constructor", "api", "checkpoints", "launch"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN[c.name])) if c.name in KNOWN else c for c in CASES],
    ids=[c.name for c in CASES],
)
def test_bad_input_raises_a_clear_weft_error(case, tmp_path):
    if case.needs and not installed(case.needs):
        pytest.skip(f"{case.needs} is not installed")
    clear, description = run_case(case, tmp_path)
    assert clear, description
