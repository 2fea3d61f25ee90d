"""psrq.features: text and audio encoders behind one interface, the embedding cache, `psrq embed`.

    from psrq.features import load_text_encoder, MusicnnEncoder
    enc = load_text_encoder()                      # all-MiniLM-L6-v2, 384-d
    X = enc.encode(["Radiohead. Tags: alternative, rock"])   # float32 [1, 384]
    audio = MusicnnEncoder("musicnn-msd")
    A = audio.encode(["clip.ogg"])                 # float32 [1, 200]

Submodules import torch / transformers lazily through these names.
"""

from __future__ import annotations

from psrq._lazy import lazy_exports

_EXPORTS = {
    "Encoder": "psrq.features.base",
    "l2_normalize": "psrq.features.base",
    "fingerprint_model_dir": "psrq.features.base",
    "EmbeddingCache": "psrq.features.cache",
    "SentenceTransformerEncoder": "psrq.features.text",
    "HFTextEncoder": "psrq.features.text",
    "load_text_encoder": "psrq.features.text",
    "encode_texts": "psrq.features.text",
    "MusicnnEncoder": "psrq.features.musicnn",
    "HFAudioEncoder": "psrq.features.hf_audio",
    "AudioDecodeError": "psrq.features.audio_io",
    "decode_audio": "psrq.features.audio_io",
    "embed_text_items": "psrq.features.embed",
    "embed_audio_items": "psrq.features.embed",
    "audio_items_from_table": "psrq.features.embed",
    "audio_items_from_dir": "psrq.features.embed",
    "load_audio_encoder": "psrq.features.embed",
    "read_tf_checkpoint": "psrq.features.tf_checkpoint",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, {"read_tf_checkpoint": "read_checkpoint"})
