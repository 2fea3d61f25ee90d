"""The quantizer registry: one list of kinds, aliases and labels that every caller reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

import psrq
from psrq.errors import ArtifactError, ConfigError
from psrq.quantize import QUANTIZERS
from psrq.quantize.registry import KINDS, LABELS, METHOD_ALIASES, quantizer_class, resolve_method


def test_every_kind_resolves_to_its_class_with_that_kind():
    assert list(QUANTIZERS) == list(KINDS) and len(QUANTIZERS) == len(KINDS)
    for kind in KINDS:
        cls = QUANTIZERS[kind]
        assert cls.kind == kind and getattr(psrq, kind) is cls and quantizer_class(kind) is cls
        assert kind in LABELS and resolve_method(kind.lower()) == kind


@pytest.mark.parametrize(
    ("alias", "kind"),
    [("rq-kmeans", "RQKMeans"), ("RQ_KMEANS", "RQKMeans"), ("rq-vae", "RQVAE"), ("PsRq", "PSRQ")],
)
def test_aliases_resolve_case_insensitively(alias, kind):
    assert resolve_method(alias) == kind


def test_unknown_names_are_errors_that_list_the_choices():
    with pytest.raises(ConfigError, match=r"unknown method 'kmeans'; choose one of .*psrq"):
        resolve_method("kmeans")
    with pytest.raises(ArtifactError, match="unknown quantizer kind 'KMeans'"):
        quantizer_class("KMeans")
    assert "KMeans" not in QUANTIZERS
    with pytest.raises(KeyError):
        QUANTIZERS["KMeans"]


def test_aliases_name_only_registered_kinds():
    assert set(METHOD_ALIASES.values()) == set(KINDS)


def test_the_registry_imports_no_quantizer_module():
    # base.py and quantize/__init__.py both import the registry, so it must not import them back.
    code = (
        "import sys, psrq.quantize.registry; "
        "print(sorted(m for m in sys.modules if m.startswith('psrq.quantize.') and m != 'psrq.quantize.registry'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
