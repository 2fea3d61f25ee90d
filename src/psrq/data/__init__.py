"""psrq.data: data set loaders, label rules, the sample protocol and the SYNTHETIC catalogue.

    from psrq.data import load_lastfm2k, ProtocolConfig, build_samples
    samples = build_samples(load_lastfm2k(), ProtocolConfig(max_history=20, seed=0))
    samples.tables["train"]   # pyarrow Table: user_id, item_id, label, timestamp, history, ...

Names are imported lazily so `psrq --help` does not pay for pyarrow.
"""

from __future__ import annotations

from psrq._lazy import lazy_exports

_LAZY = {
    "DataSet": "psrq.data.schema",
    "validate_items": "psrq.data.schema",
    "validate_interactions": "psrq.data.schema",
    "load_lastfm2k": "psrq.data.lastfm2k",
    "load_music4all": "psrq.data.music4all",
    "load_amazon2014": "psrq.data.amazon",
    "load_amazon2023": "psrq.data.amazon",
    "load_parquet": "psrq.data.parquet_source",
    "load_synth_dir": "psrq.data.parquet_source",
    "load_tiktok": "psrq.data.tiktok",
    "LabelRule": "psrq.data.labels",
    "apply_label_rule": "psrq.data.labels",
    "ProtocolConfig": "psrq.data.protocol",
    "Samples": "psrq.data.protocol",
    "build_samples": "psrq.data.protocol",
    "popularity_probe": "psrq.data.protocol",
    "sample_negatives": "psrq.data.protocol",
    "SAMPLE_SCHEMA": "psrq.formats.samples",
    "DatasetSpec": "psrq.data.prepare",
    "prepare": "psrq.data.prepare",
    "SynthConfig": "psrq.data.synth",
    "generate_synthetic": "psrq.data.synth",
}

__all__ = list(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY, {"generate_synthetic": "generate"})
