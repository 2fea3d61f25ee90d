"""The run report shows the popularity probe beside the split table, and warns when it strays."""

from __future__ import annotations

from psrq.report.run_report import data_section


def _meta(valid: float, test: float, kind: str = "implicit") -> dict:
    probe = {
        "score": "log((p + 1) / (n + 1))",
        "tolerance": 0.03,
        "train": 0.62,
        "valid": valid,
        "test": test,
        "valid_cold": valid,
        "test_cold": test,
    }
    return {
        "dataset": "mine",
        "items": 10,
        "interactions": 20,
        "label_rule": {"kind": kind},
        "protocol": {"split": [0.8, 0.1, 0.1]},
        "splits": {},
        "popularity_probe": probe,
    }


def test_probe_within_tolerance_is_shown_without_warning():
    page = data_section(_meta(0.51, 0.49))
    assert "popularity probe" in page and "valid 0.510, test 0.490" in page
    assert "WARNING" not in page


def test_probe_outside_tolerance_warns_for_any_data_set():
    page = data_section(_meta(0.38, 0.375))
    assert 'class="warning"' in page and "WARNING: popularity probe outside 0.5" in page
    assert "sampled negatives" in page
    page = data_section(_meta(0.60, 0.61, kind="rating"))  # the data's own labels: another reason
    assert "WARNING" in page and "without knowing the user" in page


def test_data_prepared_before_the_probe_existed_says_so():
    meta = _meta(0.5, 0.5)
    del meta["popularity_probe"]
    assert "not recorded" in data_section(meta)
