"""Where `psrq run` writes each file: the one description of a run directory.

    <output>/
      data/                       the data stage (`psrq data prepare`)
        items.parquet
        embeddings/<modality>.parquet   precomputed item vectors that came with the data
        samples/meta.json         data set, protocol and split statistics (and the samples)
      synth-catalogue/synth.json  the SYNTHETIC catalogue's settings (`dataset.name: synth`)
      embeddings/<modality>.parquet     one embedding file per modality
      quantizers/<method>/        a fitted MultimodalQuantizer
      sids/<method>.parquet       its semantic IDs
      quality/<method>.json       ID quality of each codebook (`evaluate_ids`)
      quality/<method>.points.parquet   per codebook: 2-D PCA of the quantized rows + their codes
      rank/<ranker>[-<method>]/seed<k>/metrics.json, model/
      report.html
      .stages/<stage>.json        the stage runner's markers (psrq.stages)

The pipeline (psrq.pipeline) writes these paths and the report (psrq.report.run_report) reads
them; neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def ranker_name(ranker: str, sid_method: str | None) -> str:
    """The directory name of a ranker's runs: `mcca-psrq` (SIDs of quantizer psrq) or `din`."""
    return f"{ranker}-{sid_method}" if sid_method else ranker


@dataclass
class RunPaths:
    root: Path

    # ---- data ---------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def items(self) -> Path:
        return self.data / "items.parquet"

    def data_embedding(self, modality: str) -> Path:
        """A precomputed embedding file as the data stage left it (copied to `embedding`)."""
        return self.data / "embeddings" / f"{modality}.parquet"

    @property
    def samples(self) -> Path:
        return self.data / "samples"

    @property
    def meta(self) -> Path:
        return self.samples / "meta.json"

    @property
    def synth_catalogue(self) -> Path:
        return self.root / "synth-catalogue"

    @property
    def synth_marker(self) -> Path:
        return self.synth_catalogue / "synth.json"

    # ---- embeddings and semantic IDs ----------------------------------------------------------
    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    def embedding(self, modality: str) -> Path:
        return self.embeddings / f"{modality}.parquet"

    def sids(self, method: str) -> Path:
        return self.root / "sids" / f"{method}.parquet"

    def quantizer(self, method: str) -> Path:
        return self.root / "quantizers" / method

    def quality(self, method: str) -> Path:
        return self.root / "quality" / f"{method}.json"

    def quality_points(self, method: str) -> Path:
        return self.root / "quality" / f"{method}.points.parquet"

    # ---- ranking ------------------------------------------------------------------------------
    def ranker(self, name: str, seed: int) -> Path:
        return self.root / "rank" / name / f"seed{seed}"

    def rank_metrics(self, name: str, seed: int) -> Path:
        return self.ranker(name, seed) / "metrics.json"

    def rank_model(self, name: str, seed: int) -> Path:
        return self.ranker(name, seed) / "model"

    # ---- report -------------------------------------------------------------------------------
    @property
    def report(self) -> Path:
        return self.root / "report.html"
