"""Small real models built from configs (random seeded weights) and saved locally: no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def write_wav(path: Path, wave: np.ndarray, rate: int) -> Path:
    import soundfile as sf

    sf.write(path, wave.astype(np.float32), rate, subtype="FLOAT")
    return path


WORDS = [
    "rock",
    "jazz",
    "pop",
    "metal",
    "indie",
    "folk",
    "radiohead",
    "miles",
    "davis",
    "tags",
    "alternative",
    "electronic",
    "british",
    "trumpet",
    "guitar",
    "the",
    "band",
    ".",
]


def build_tiny_bert(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with random (seeded) weights and a word-level vocab, saved locally."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(path)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(path)
    return path


def build_tiny_llama(path: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide LLaMA whose tokenizer has no pad token (as LLaMA 3.2's), saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    assert fast.pad_token is None
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    LlamaModel(config).eval().save_pretrained(path)
    return path


def build_tiny_wav2vec2(path: Path, sampling_rate: int = 24_000, seed: int = 0) -> Path:
    """A 2-layer, 32-wide wav2vec 2.0 (MERT's architecture family) + feature extractor, saved locally."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    Wav2Vec2Model(config).eval().save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        sampling_rate=sampling_rate, do_normalize=True, return_attention_mask=True
    ).save_pretrained(path)
    return path
