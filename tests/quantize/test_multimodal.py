"""MultimodalQuantizer on SYNTHETIC two-modality data (text-like 16-d, audio-like 8-d blobs)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from psrq import MultimodalQuantizer
from psrq.errors import ArtifactError, ConfigError, InputError, NotFittedError
from psrq.formats.embeddings import from_arrays, read_embedding_parquet
from psrq.formats.sids import JOINT, SemanticIDs
from psrq.quantize.collisions import collision_stats
from psrq.quantize.psrq import PSRQ
from psrq.quantize.rq_kmeans import RQKMeans

PARAMS = {"codebook_size": 6}


pytestmark = pytest.mark.usefixtures("single_faiss_thread")


def synthetic_modalities(n: int = 300, seed: int = 0, audio_scale: float = 40.0):
    """SYNTHETIC: item ids, text [n, 16] and audio [n, 8] drawn around 12 shared blob centres.

    Audio is scaled up (x40) so an unnormalised concatenation would be dominated by it.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 12, size=n)
    text = rng.normal(size=(12, 16))[labels] * 3 + rng.normal(size=(n, 16)) * 0.5
    audio = (rng.normal(size=(12, 8))[labels] * 3 + rng.normal(size=(n, 8)) * 0.5) * audio_scale
    ids = np.array([f"synthetic-{i:04d}" for i in range(n)], dtype=object)
    return ids, text.astype(np.float32), audio.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return synthetic_modalities()


@pytest.fixture(scope="module")
def fitted(data):
    """Fitted on all text items and the first 250 audio items (50 items lack audio)."""
    ids, text, audio = data
    inputs = {"text": (ids, text), "audio": (ids[:250], audio[:250])}
    mq = MultimodalQuantizer(params=PARAMS, seed=0)
    sids = mq.fit_transform(inputs, disambiguate=True)
    return mq, sids, inputs


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_every_item_gets_one_tuple_per_codebook(fitted, data) -> None:
    mq, sids, _ = fitted
    ids, _, _ = data
    assert sids.codebooks == ["text", "audio", JOINT]
    assert list(sids.item_ids) == list(ids)
    for cb in sids.codebooks:
        assert sids.codes[cb].dtype == np.int32 and sids.codes[cb].shape == (300, 3)
        assert sids.codes[cb][sids.present[cb]].max() < PARAMS["codebook_size"]
    assert mq.quantizers_["text"].kind == "PSRQ"  # the default method, 3 levels


def test_modal_specific_and_joint_ids_are_psrq_on_normalised_blocks(fitted, data) -> None:
    """method.md: modal-specific = PSRQ(X^t), PSRQ(X^a); modal-joint = PSRQ([X^t || X^a])."""
    _, sids, _ = fitted
    _, text, audio = data
    expected_text = PSRQ(**PARAMS, seed=0).fit(l2(text)).transform(l2(text))
    np.testing.assert_array_equal(sids.codes["text"], expected_text)
    both = np.hstack([l2(text[:250]), l2(audio[:250])])
    expected_joint = PSRQ(**PARAMS, seed=0).fit(both).transform(both)
    np.testing.assert_array_equal(sids.codes[JOINT][:250], expected_joint)


def test_missing_modality_gives_null_codes_and_imputes_the_joint_block(fitted, data) -> None:
    mq, sids, _ = fitted
    _, text, audio = data
    assert sids.present["audio"].sum() == 250 and not sids.present["audio"][250:].any()
    assert sids.present[JOINT].all() and sids.present["text"].all()
    assert sids.has_modality[250:, 1].sum() == 0 and sids.has_modality[:250].all()
    # The joint codebook is fitted on complete items only ...
    assert mq.quantizers_[JOINT].n_fit_rows_ == 250
    # ... and a missing audio block is the normalised training mean of audio.
    audio_mean = l2(audio[:250]).mean(axis=0)
    imputed = np.hstack([l2(text[250:]), np.tile(audio_mean, (50, 1))]).astype(np.float32)
    np.testing.assert_array_equal(sids.codes[JOINT][250:], mq.quantizers_[JOINT].transform(imputed))
    table = sids.to_table()
    assert table.column("sid_audio").null_count == 50
    assert table.column("missing_modalities").to_pylist()[260] == ["audio"]
    assert table.column("missing_modalities").to_pylist()[0] == []


def test_item_without_any_modality_is_null_everywhere(fitted, data) -> None:
    mq, _, _ = fitted
    ids, text, _ = data
    out = mq.transform({"text": (ids[:5], text[:5])}, item_ids=[*ids[:5], "ghost"])
    assert out.item_ids[-1] == "ghost"
    assert not any(out.present[cb][-1] for cb in out.codebooks)
    assert out.present["text"][:5].all() and not out.present["audio"].any()
    assert out.missing_modalities()[-1] == ["text", "audio"]


def test_inputs_outside_the_catalogue_are_an_error(fitted, data) -> None:
    mq, _, _ = fitted
    ids, text, _ = data
    with pytest.raises(InputError, match="not in item_ids: 'synthetic-0002'"):
        mq.transform({"text": (ids[:3], text[:3])}, item_ids=ids[:2])


def test_duplicate_item_ids_are_named(tmp_path) -> None:
    ids = np.array(["a", "b", "a", "c", "c"], dtype=object)
    X = np.ones((5, 4), np.float32)
    with pytest.raises(InputError, match=r"duplicate item IDs: 'a' x2, 'c' x2"):
        MultimodalQuantizer().fit({"text": (ids, X)})
    path = tmp_path / "text.parquet"
    pq.write_table(pa.table({"item_id": ids, "embedding": X.tolist()}), path)
    with pytest.raises(InputError, match=rf"{path}: duplicate item IDs: 'a' x2"):
        read_embedding_parquet(path, "text")


def test_l2_and_standard_make_ids_independent_of_a_modality_scale(data) -> None:
    ids, text, audio = data
    for mode in ("l2", "standard"):
        a = MultimodalQuantizer(params=PARAMS, normalize=mode).fit_transform(
            {"text": (ids, text), "audio": (ids, audio)}
        )
        b = MultimodalQuantizer(params=PARAMS, normalize=mode).fit_transform(
            {"text": (ids, text), "audio": (ids, audio * 1000)}
        )
        for cb in a.codebooks:
            np.testing.assert_array_equal(a.codes[cb], b.codes[cb], err_msg=f"{mode} {cb}")


def test_normalisation_modes_transform_as_documented(data) -> None:
    ids, text, audio = data
    inputs = {"text": (ids, text), "audio": (ids, audio)}
    mq = MultimodalQuantizer(params=PARAMS, normalize={"text": "standard", "audio": "none"}).fit(
        inputs
    )
    seen = mq.quantizer_inputs(inputs)
    z = seen["text"][1]
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    # standard: z-score / sqrt(dim), so the block's mean squared norm is 1 like an L2 block.
    assert np.mean(np.sum(z**2, axis=1)) == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_array_equal(seen["audio"][1], audio)
    np.testing.assert_allclose(seen[JOINT][1], np.hstack([z, audio]))
    mq_l2 = MultimodalQuantizer(params=PARAMS).fit(inputs)
    np.testing.assert_allclose(
        np.linalg.norm(mq_l2.quantizer_inputs(inputs)["audio"][1], axis=1), 1, rtol=1e-5
    )


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    """Share of items carrying their code's majority label (1 = the codes follow the labels)."""
    return sum(np.bincount(labels[codes == c]).max() for c in np.unique(codes)) / len(codes)


def test_unnormalised_joint_id_is_dominated_by_the_larger_modality() -> None:
    """Why normalisation is on by default. SYNTHETIC: text and audio with independent blob
    labels, audio x40: unnormalised, the level-1 joint code ignores text."""
    rng = np.random.default_rng(5)
    n = 300
    text_label, audio_label = rng.integers(0, 6, size=n), rng.integers(0, 6, size=n)
    text = rng.normal(size=(6, 16))[text_label] * 3 + rng.normal(size=(n, 16)) * 0.3
    audio = (rng.normal(size=(6, 8))[audio_label] * 3 + rng.normal(size=(n, 8)) * 0.3) * 40
    ids = np.array([f"synthetic-{i}" for i in range(n)], dtype=object)
    inputs = {"text": (ids, text), "audio": (ids, audio)}
    raw = (
        MultimodalQuantizer(params=PARAMS, normalize="none")
        .fit_transform(inputs)
        .codes[JOINT][:, 0]
    )
    balanced = (
        MultimodalQuantizer(params=PARAMS, normalize="l2").fit_transform(inputs).codes[JOINT][:, 0]
    )
    # Measured (seed 5): raw: text purity 0.23 (chance level), audio 0.70; l2: text 0.47, audio
    # 0.49. Over seeds 5-10: raw text 0.23-0.25, raw audio 0.53-0.84, l2 text 0.40-0.61.
    assert purity(raw, text_label) < 0.3 and purity(raw, audio_label) > 0.5
    assert purity(balanced, text_label) > purity(raw, text_label) + 0.15


def test_joint_weights_scale_the_blocks(data) -> None:
    ids, text, audio = data
    inputs = {"text": (ids, text), "audio": (ids, audio)}
    mq = MultimodalQuantizer(params=PARAMS, weights={"audio": 2.0}).fit(inputs)
    seen = mq.quantizer_inputs(inputs)
    np.testing.assert_allclose(seen[JOINT][1][:, 16:], 2 * seen["audio"][1], rtol=1e-6)
    np.testing.assert_allclose(seen[JOINT][1][:, :16], seen["text"][1], rtol=1e-6)


def test_assign_gives_training_items_their_training_codes_and_suffixes(
    fitted, data, tmp_path
) -> None:
    mq, train, _ = fitted
    ids, text, audio = data
    mq.save(tmp_path / "model")
    loaded = MultimodalQuantizer.load(tmp_path / "model")
    order = np.random.default_rng(1).permutation(300)[:120]  # another order, a subset
    has_audio = order[order < 250]
    later = loaded.transform(
        {"text": (ids[order], text[order]), "audio": (ids[has_audio], audio[has_audio])},
        disambiguate=True,
    )
    assert list(later.item_ids) == list(ids[order])
    for cb in train.codebooks:
        np.testing.assert_array_equal(later.codes[cb], train.codes[cb][order])
        np.testing.assert_array_equal(later.present[cb], train.present[cb][order])
        np.testing.assert_array_equal(later.suffixes[cb], train.suffixes[cb][order])


def test_items_encoded_later_get_the_codes_they_would_get_in_training(data) -> None:
    ids, text, audio = data
    mq = MultimodalQuantizer(params=PARAMS).fit(
        {"text": (ids[:200], text[:200]), "audio": (ids[:200], audio[:200])}
    )
    new = mq.transform({"text": (ids[200:], text[200:]), "audio": (ids[200:], audio[200:])})
    again = mq.transform({"text": (ids, text), "audio": (ids, audio)})
    for cb in new.codebooks:
        np.testing.assert_array_equal(again.codes[cb][200:], new.codes[cb])
        np.testing.assert_array_equal(again.codes[cb][:200], mq.train_sids_.codes[cb])


def test_new_items_do_not_reuse_training_suffixes(data) -> None:
    ids, text, audio = data
    mq = MultimodalQuantizer(params={"codebook_size": 3}, seed=0)  # 27 tuples at most: collisions
    train = mq.fit_transform(
        {"text": (ids[:200], text[:200]), "audio": (ids[:200], audio[:200])}, disambiguate=True
    )
    new = mq.transform(
        {"text": (ids[200:], text[200:]), "audio": (ids[200:], audio[200:])}, disambiguate=True
    )
    for cb in train.codebooks:
        both = np.vstack(
            [
                np.column_stack([train.codes[cb], train.suffixes[cb]]),
                np.column_stack([new.codes[cb], new.suffixes[cb]]),
            ]
        )
        assert collision_stats(both)["colliding_items"] == 0, cb
        assert collision_stats(new.codes[cb])["colliding_items"] > 0  # there was something to fix
    # A second batch must also avoid the first batch's suffixes once it is passed as `taken`.
    other = np.array([f"synthetic-new-{i}" for i in range(100)], dtype=object)
    second = mq.transform(
        {"text": (other, text[200:]), "audio": (other, audio[200:])}, disambiguate=True, taken=[new]
    )
    np.testing.assert_array_equal(second.codes["text"], new.codes["text"])
    assert (second.suffixes["text"] > new.suffixes["text"]).all()


def test_save_load_round_trip_and_corruption(fitted, tmp_path) -> None:
    mq, sids, inputs = fitted
    path = mq.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "MultimodalQuantizer" and manifest["fitted"]["codebooks"] == [
        "text",
        "audio",
        JOINT,
    ]
    assert manifest["fitted"]["train_collisions"]["audio"]["items"] == 250
    assert (path / "codebooks" / "joint" / "manifest.json").is_file()
    assert (path / "suffix_tables" / "text.parquet").is_file()
    loaded = MultimodalQuantizer.load(path)
    assert loaded.get_params() == mq.get_params()
    again = loaded.transform(inputs)
    for cb in sids.codebooks:
        np.testing.assert_array_equal(again.codes[cb], sids.codes[cb])
    with open(path / "codebooks" / "text" / "state.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(ArtifactError, match="checksum"):
        MultimodalQuantizer.load(path)


def test_sids_parquet_round_trip(fitted, tmp_path) -> None:
    _, sids, _ = fitted
    sids.write(tmp_path / "sids.parquet")
    schema = pq.read_schema(tmp_path / "sids.parquet")
    sid_type = schema.field("sid_text").type
    assert (
        pa.types.is_fixed_size_list(sid_type)
        and sid_type.list_size == 3
        and sid_type.value_type == pa.int32()
    )
    assert schema.field("sid_joint_suffix").type == pa.int32()
    assert json.loads(schema.metadata[b"psrq.sid_sizes"]) == {
        cb: [6, 6, 6] for cb in sids.codebooks
    }
    back = SemanticIDs.read(tmp_path / "sids.parquet")
    assert back.codebooks == sids.codebooks and back.modalities == sids.modalities
    np.testing.assert_array_equal(back.has_modality, sids.has_modality)
    for cb in sids.codebooks:
        np.testing.assert_array_equal(
            back.codes[cb][sids.present[cb]], sids.codes[cb][sids.present[cb]]
        )
        np.testing.assert_array_equal(back.present[cb], sids.present[cb])
        np.testing.assert_array_equal(back.suffixes[cb], sids.suffixes[cb])


def test_same_seed_same_ids_and_per_codebook_method(data) -> None:
    ids, text, audio = data
    inputs = {"text": (ids, text), "audio": (ids, audio)}
    cfg = {
        "params": PARAMS,
        "codebook_params": {"joint": {"method": "rqkmeans", "codebook_size": 5}},
    }
    a = MultimodalQuantizer(**cfg, seed=3).fit(inputs)
    b = MultimodalQuantizer(**cfg, seed=3).fit(inputs)
    assert isinstance(a.quantizers_[JOINT], RQKMeans) and a.quantizers_[JOINT].codebook_sizes_ == [
        5,
        5,
        5,
    ]
    for cb in a.codebooks_:
        np.testing.assert_array_equal(a.train_sids_.codes[cb], b.train_sids_.codes[cb])


def test_single_modality_has_no_joint_codebook(data) -> None:
    ids, text, _ = data
    sids = MultimodalQuantizer(params=PARAMS).fit_transform({"text": (ids, text)})
    assert sids.codebooks == ["text"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "kmeans"}, ConfigError, "unknown method 'kmeans'"),
        ({"normalize": "minmax"}, ConfigError, "normalize for 'text' is 'minmax'"),
        ({"weights": {"audio": 0}}, ConfigError, r"weights\['audio'\] must be a number > 0"),
        ({"weights": {"image": 1.0}}, ConfigError, "weights names \\['image'\\]"),
        ({"codebook_params": {"lyrics": {}}}, ConfigError, "codebook_params names \\['lyrics'\\]"),
        (
            {"params": {"prefix_weight": 0.5}, "method": "vq"},
            ConfigError,
            "VQ has no parameter 'prefix_weight'",
        ),
        ({"params": {"codebook_size": 500}}, InputError, "codebook 'text'"),
    ],
)
def test_bad_configuration_is_named(data, kwargs, error, match) -> None:
    ids, text, audio = data
    with pytest.raises(error, match=match):
        MultimodalQuantizer(**kwargs).fit({"text": (ids, text), "audio": (ids, audio)})


def test_bad_inputs_are_named(fitted, data) -> None:
    mq, _, _ = fitted
    ids, text, audio = data
    with pytest.raises(InputError, match="no item has every modality"):
        MultimodalQuantizer(params=PARAMS).fit(
            {"text": (ids[:150], text[:150]), "audio": (ids[150:], audio[150:])}
        )
    with pytest.raises(InputError, match=r"modality \['image'\] was not fitted"):
        mq.transform({"image": (ids, text)})
    with pytest.raises(
        InputError, match="text embeddings have 8 values; the model was fitted on 16"
    ):
        mq.transform({"text": (ids, audio)})
    with pytest.raises(InputError, match="NaN or inf in the embedding of item"):
        bad = text.copy()
        bad[7, 3] = np.nan
        from_arrays("text", ids, bad)
    with pytest.raises(InputError, match="reserved"):
        MultimodalQuantizer().fit({"joint": (ids, text)})
    with pytest.raises(NotFittedError):
        MultimodalQuantizer().transform({"text": (ids, text)})


# ---- reading embeddings (psrq.formats.embeddings, psrq.quantize.embeddings_io) ----------------------
def test_null_embeddings_mean_missing_and_integer_ids_become_strings(tmp_path) -> None:
    from psrq.formats.embeddings import read_items_parquet

    path = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array([10, 11, 12], pa.int64()),
                "emb_audio": [[1.0, 2.0], None, [3.0, 4.0]],
                "emb_text": [[1.0], [2.0], [3.0]],
            }
        ),
        path,
    )
    got = read_items_parquet(path)
    assert list(got) == ["audio", "text"]
    assert got["audio"].item_ids.tolist() == ["10", "12"] and got["audio"].n_null == 1
    np.testing.assert_array_equal(got["audio"].X, [[1, 2], [3, 4]])
    assert got["text"].X.dtype == np.float32


def test_malformed_embedding_files_name_file_and_item(tmp_path) -> None:
    from psrq.quantize.embeddings_io import read_npy

    ragged = tmp_path / "ragged.parquet"
    pq.write_table(
        pa.table({"item_id": ["a", "b", "c"], "embedding": [[1.0, 2.0], [1.0], [1.0, 2.0]]}), ragged
    )
    with pytest.raises(
        InputError,
        match=r"ragged.parquet: column 'embedding' has vectors of different lengths.*'b'",
    ):
        read_embedding_parquet(ragged, "text")
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "embedding": [[1.0, None], [1.0, 2.0]]}), nan)
    with pytest.raises(
        InputError, match=r"nan.parquet: NaN or inf in the embedding of item\(s\) 'a'"
    ):
        read_embedding_parquet(nan, "text")
    no_ids = tmp_path / "no_ids.parquet"
    pq.write_table(pa.table({"id": ["a"], "embedding": [[1.0]]}), no_ids)
    with pytest.raises(InputError, match=r"missing column\(s\) \['item_id'\]"):
        read_embedding_parquet(no_ids, "text")
    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    (tmp_path / "ids.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match=r"x\.npy has 3 rows but .*ids\.txt lists 2 item IDs"):
        read_npy(tmp_path / "x.npy", tmp_path / "ids.txt", "text")
