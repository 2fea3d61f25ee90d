"""Speed of the feature encoders on this machine (CPU).

    .venv/bin/python benchmarks/bench_features.py                 # 2 torch threads, defaults
    .venv/bin/python benchmarks/bench_features.py --threads 2 --n-texts 2000 --clips data/audio-clips

Text: all-MiniLM-L6-v2 items/s on real Last.fm-2k artist strings ("<name>. Tags: t1, t2, ...",
composed from the carried src/psrq/_data/lastfm-2k files), cold (no cache) and warm (every
text served from the embedding cache), in the same process.
Wall time depends on what else runs on the machine; CPU time (process_time, all threads summed)
is printed too because it barely does.
Audio: musicnn seconds of compute per 30-s clip (real clips cut into 30-s pieces), split into
decoding + resampling, log-mel, and network, with all patches batched versus one patch per
forward pass (upstream's batch size 1), in the same process.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
LASTFM = REPO / "src" / "psrq" / "_data" / "lastfm-2k"


def lastfm_texts(n: int, max_tags: int = 10) -> list[str]:
    """Real Last.fm-2k artist strings: name plus the artist's most used tags."""
    names: dict[str, str] = {}
    with open(LASTFM / "artists.dat", encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            names[parts[0]] = parts[1]
    tag_names: dict[str, str] = {}
    with open(LASTFM / "tags.dat", encoding="latin-1") as f:
        next(f)
        for line in f:
            tid, value = line.rstrip("\n").split("\t", 1)
            tag_names[tid] = value
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(LASTFM / "user_taggedartists.dat", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, artist, tag = line.split("\t")[:3]
            counts[artist][tag] += 1
    texts = []
    for artist, name in names.items():
        tags = sorted(counts.get(artist, {}).items(), key=lambda kv: -kv[1])[:max_tags]
        tag_str = ", ".join(tag_names[t] for t, _ in tags)
        texts.append(f"{name}. Tags: {tag_str}" if tag_str else name)
        if len(texts) == n:
            break
    return texts


def bench_text(n_texts: int, batch_size: int) -> None:
    from psrq.features.text import encode_texts, load_text_encoder

    texts = lastfm_texts(n_texts)
    encoder = load_text_encoder(batch_size=batch_size)
    encoder.encode(texts[:batch_size])  # warm-up: first-call allocations
    with tempfile.TemporaryDirectory() as cache:
        t0, c0 = time.perf_counter(), time.process_time()
        encode_texts(encoder, texts, cache_dir=cache, progress=False)
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0 = time.perf_counter()
        _, hits = encode_texts(encoder, texts, cache_dir=cache, progress=False)
        warm = time.perf_counter() - t0
    mean_chars = sum(map(len, texts)) / len(texts)
    print(
        f"text  MiniLM, {len(texts)} Last.fm artist strings (mean {mean_chars:.0f} chars), batch {batch_size}"
    )
    print(
        f"      cold: {len(texts) / cold:8.1f} items/s ({cold:.2f} s wall, {cold_cpu / len(texts) * 1000:.1f} CPU-ms per item)"
    )
    print(
        f"      warm (cache, {hits} hits): {len(texts) / warm:8.1f} items/s ({warm:.3f} s), {cold / warm:.0f}x faster"
    )


def bench_audio(clips: Path, variant: str) -> None:
    import torch

    from psrq.features.audio_io import decode_audio
    from psrq.features.musicnn import MusicnnEncoder

    encoder = MusicnnEncoder(variant)
    files = sorted(p for p in clips.iterdir() if p.suffix == ".ogg")
    t0 = time.perf_counter()
    waves = [decode_audio(p, 16_000) for p in files]
    decode = time.perf_counter() - t0
    audio_s = sum(len(w) for w in waves) / 16_000
    pieces = [
        w[s : s + 30 * 16_000]
        for w in waves
        for s in range(0, len(w) - 30 * 16_000 + 1, 30 * 16_000)
    ]
    t0 = time.perf_counter()
    patches = [encoder.patches(p) for p in pieces]
    mel = time.perf_counter() - t0
    batch = torch.cat(patches)
    encoder.run_patches(batch[:4])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    encoder.run_patches(batch)
    net, net_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(batch.shape[0]):
        encoder.run_patches(batch[i : i + 1])
    one_by_one, one_cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(pieces)
    per_clip_decode = decode / audio_s * 30
    print(
        f"audio {variant}: {len(files)} real clips, {audio_s:.0f} s of audio, {n} 30-s pieces, {batch.shape[0]} patches"
    )
    print(
        f"      per 30-s clip: decode+resample {per_clip_decode:.3f} s, log-mel {mel / n:.3f} s, "
        f"network {net / n:.3f} s -> total {per_clip_decode + (mel + net) / n:.3f} s"
    )
    print(
        f"      network CPU time (all threads; robust to other load): {net_cpu / n:.3f} CPU-s per clip"
    )
    print(
        f"      network, one patch per forward (upstream batch size 1): {one_by_one / n:.3f} s per clip, "
        f"{one_cpu / n:.3f} CPU-s per clip; batched is {one_by_one / net:.2f}x faster in wall time, "
        f"{one_cpu / net_cpu:.2f}x in CPU time"
    )
    print(
        f"      realtime factor: {30 / (per_clip_decode + (mel + net) / n):.0f}x faster than playback"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clips", type=Path, default=REPO / "data" / "audio-clips")
    parser.add_argument("--variant", default="musicnn-msd")
    parser.add_argument("--skip-text", action="store_true")
    parser.add_argument("--skip-audio", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"torch {torch.__version__} with {args.threads} threads; load average {os.getloadavg()[0]:.1f}"
    )
    if not args.skip_text:
        bench_text(args.n_texts, args.batch_size)
    if not args.skip_audio:
        bench_audio(args.clips, args.variant)


if __name__ == "__main__":
    main()
