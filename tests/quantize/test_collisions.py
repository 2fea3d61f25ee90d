"""Collision statistics and disambiguation suffixes on hand-made code matrices."""

from __future__ import annotations

import numpy as np
import pytest

from psrq.errors import ArtifactError, InputError
from psrq.quantize.collisions import SuffixTable, assign_suffixes, collision_stats, group_tuples

CODES = np.array([[0, 0], [0, 0], [0, 1], [1, 1], [0, 0]], dtype=np.int32)
IDS = np.array(["e", "c", "a", "b", "d"], dtype=object)


def test_collision_stats_on_a_hand_made_matrix() -> None:
    s = collision_stats(CODES)
    assert s == {
        "items": 5,
        "distinct_ids": 3,
        "unique_ratio": 3 / 5,
        "items_per_id_max": 3,
        "items_per_id_p99": 3,
        "items_per_id_mean": 5 / 3,
        "colliding_items": 3,
    }
    assert collision_stats(np.arange(8).reshape(4, 2))["colliding_items"] == 0
    assert collision_stats(np.zeros((0, 3), np.int32))["items"] == 0


def test_p99_is_an_observed_group_size() -> None:
    # 99 singleton tuples and one tuple held by 50 items: p99 over the 100 IDs is 1, max is 50.
    codes = np.concatenate([np.arange(99)[:, None], np.full((50, 1), 500)]).astype(np.int32)
    s = collision_stats(codes)
    assert (s["items_per_id_p99"], s["items_per_id_max"], s["distinct_ids"]) == (1, 50, 100)


def test_group_tuples_radix_and_fallback_agree() -> None:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 3, size=(200, 3))
    inv, tuples, sizes = group_tuples(small)
    np.testing.assert_array_equal(tuples[inv], small)
    assert sizes.sum() == 200 and len(tuples) == len(np.unique(small, axis=0))
    # Codes so large the mixed-radix key would overflow int64: the np.unique path must agree.
    huge = small.astype(np.int64) * (2**40)
    inv_h, tuples_h, sizes_h = group_tuples(huge)
    np.testing.assert_array_equal(inv_h, inv)
    np.testing.assert_array_equal(sizes_h, sizes)
    np.testing.assert_array_equal(tuples_h, tuples * 2**40)
    assert collision_stats(huge) == collision_stats(small)


def test_suffixes_follow_item_id_order_within_a_tuple() -> None:
    suffix = assign_suffixes(IDS, CODES)
    # tuple (0,0) holds e, c, d -> c=0, d=1, e=2; singletons get 0.
    np.testing.assert_array_equal(suffix, [2, 0, 0, 0, 1])
    assert suffix.dtype == np.int32
    # String order by code point, as documented: "item10" < "item9" < "z" < "é".
    ids = np.array(["é", "item9", "z", "item10"], dtype=object)
    np.testing.assert_array_equal(assign_suffixes(ids, np.zeros((4, 3), np.int32)), [3, 1, 2, 0])


def test_suffixes_do_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, size=(300, 2))
    ids = np.array([f"item{i}" for i in rng.permutation(300)], dtype=object)
    suffix = assign_suffixes(ids, codes)
    perm = rng.permutation(300)
    np.testing.assert_array_equal(assign_suffixes(ids[perm], codes[perm]), suffix[perm])
    assert collision_stats(np.column_stack([codes, suffix]))["colliding_items"] == 0


def test_suffixes_continue_after_taken_ones() -> None:
    taken = SuffixTable.from_codes(CODES)  # (0,0) x3, (0,1) x1, (1,1) x1
    new_codes = np.array([[0, 0], [2, 2], [0, 1], [0, 0]])
    new_ids = np.array(["z", "y", "x", "w"], dtype=object)
    np.testing.assert_array_equal(assign_suffixes(new_ids, new_codes, taken=taken), [4, 0, 1, 3])


def test_suffix_table_from_explicit_suffixes_merge_and_round_trip(tmp_path) -> None:
    # Suffixes with a gap: the next free one is max + 1, not the count.
    table = SuffixTable.from_codes(np.array([[1, 2], [1, 2]]), suffixes=np.array([0, 7]))
    np.testing.assert_array_equal(table.lookup(np.array([[1, 2], [3, 3]])), [8, 0])
    merged = table.merge(SuffixTable.from_codes(np.array([[1, 2], [3, 3]])))
    np.testing.assert_array_equal(merged.lookup(np.array([[1, 2], [3, 3], [0, 0]])), [8, 1, 0])
    merged.write(tmp_path / "t.parquet")
    back = SuffixTable.read(tmp_path / "t.parquet")
    np.testing.assert_array_equal(back.tuples, merged.tuples)
    np.testing.assert_array_equal(back.next_free, merged.next_free)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match=r"bad\.parquet"):
        SuffixTable.read(tmp_path / "bad.parquet")


def test_bad_code_matrices_are_rejected() -> None:
    with pytest.raises(InputError, match="integer matrix"):
        collision_stats(np.zeros(4))
    with pytest.raises(InputError, match="non-negative"):
        collision_stats(np.array([[0, -1]]))
    with pytest.raises(InputError, match="2 item IDs but 5 code rows"):
        assign_suffixes(IDS[:2], CODES)
