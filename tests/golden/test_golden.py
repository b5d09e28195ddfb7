"""Golden regression cases: each folder here is a config plus the metrics it must keep producing.

``pytest tests/golden --update-golden`` rewrites the expected metrics deliberately (review the diff).
"""

from pathlib import Path

import pytest

from recsim.explore import golden

GOLDEN = Path(__file__).parent
CASES = [p.name for p in golden.case_dirs(GOLDEN)]


@pytest.mark.parametrize("case", CASES)
def test_golden(case, update_golden):
    if update_golden:
        golden.update(GOLDEN, [case])
    result = golden.check_case(GOLDEN / case)
    assert result.passed, "\n".join(check.describe() for check in result.failures)
