"""Label rules as configuration: how raw interactions become 0/1 labels.

| rule | label | source column | paper |
|---|---|---|---|
| `explicit` | the column as given (must be 0/1) | `label` | industrial (collected / not) |
| `rating` | `rating >= threshold` (default 4) | `rating` | Amazon Baby |
| `play_count` | `play_count > 1` ("played repeatedly"); `== 1` is 0 | `play_count` | Music4All |
| `implicit` | every interaction is a positive; negatives are sampled | - | Last.fm-2k default |

`auto` picks the data set's own rule (Last.fm: implicit, Music4All: play_count, Amazon: rating,
bring-your-own: explicit if a `label` column exists, else rating, else play_count, else implicit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from psrq.errors import ConfigError, InputError

RULES = ("auto", "explicit", "rating", "play_count", "implicit")


@dataclass(frozen=True)
class LabelRule:
    """Which rule labels the interactions; `n_negatives` sampled negatives per positive (implicit only)."""

    kind: str = "auto"
    rating_threshold: float = 4.0
    n_negatives: int = 1

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ConfigError(
                f"label rule {self.kind!r} is unknown; choose one of {', '.join(RULES)}"
            )
        if self.n_negatives < 0:
            raise ConfigError(f"n_negatives must be >= 0, got {self.n_negatives}")

    def resolve(self, interactions: pa.Table, default: str) -> LabelRule:
        """The concrete rule for this data: `auto` becomes the data set's default."""
        if self.kind != "auto":
            return self
        kind = default
        if default == "auto":
            names = interactions.column_names
            kind = next(
                (
                    k
                    for k, col in (
                        ("explicit", "label"),
                        ("rating", "rating"),
                        ("play_count", "play_count"),
                    )
                    if col in names
                ),
                "implicit",
            )
        return LabelRule(
            kind=kind, rating_threshold=self.rating_threshold, n_negatives=self.n_negatives
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def apply_label_rule(interactions: pa.Table, rule: LabelRule, source: str) -> np.ndarray:
    """int8 [n] labels for the interactions under a resolved rule (implicit: all ones)."""
    column = {"explicit": "label", "rating": "rating", "play_count": "play_count"}.get(rule.kind)
    if column is not None and column not in interactions.column_names:
        raise InputError(
            f"{source}: label rule {rule.kind!r} needs column {column!r}, which the interactions lack"
        )
    if rule.kind == "explicit":
        labels = interactions.column("label").to_numpy(zero_copy_only=False).astype(np.int8)
        if not np.isin(labels, (0, 1)).all():
            raise InputError(f"{source}: column label must be 0 or 1")
        return labels
    if rule.kind == "rating":
        return (
            pc.greater_equal(interactions.column("rating"), rule.rating_threshold)
            .to_numpy(zero_copy_only=False)
            .astype(np.int8)
        )
    if rule.kind == "play_count":
        return (interactions.column("play_count").to_numpy(zero_copy_only=False) > 1).astype(
            np.int8
        )
    if rule.kind == "implicit":
        return np.ones(interactions.num_rows, dtype=np.int8)
    raise ConfigError(f"label rule {rule.kind!r} must be resolved before use")
