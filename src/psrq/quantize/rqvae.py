"""RQ-VAE: an MLP auto-encoder whose latent is quantized by residual VQ (the learned baseline).

    q = RQVAE(n_levels=3, codebook_size=128, seed=0).fit(X)   # X: [n_items, dim]
    codes = q.transform(X)                                    # int32 [n_items, 3]
    X_hat = q.inverse_transform(codes)                        # decoder(sum of the 3 codewords)

Model (as in TIGER / the paper's RQ-VAE baseline): x -> encoder MLP -> z; residual VQ in the
latent space, r_0 = z, c_l = argmin_c ||r_l - C_l[c]||, r_{l+1} = r_l - C_l[c_l];
x_hat = decoder(sum_l C_l[c_l]) with a straight-through estimator. Loss =
MSE(x_hat, x) + sum_l ||sg[r_l] - C_l[c_l]||^2 + beta * sum_l ||r_l - sg[C_l[c_l]]||^2, Adam.

Documented choices the paper leaves open:
- Inputs are centred and divided by one global RMS before the encoder (undone by the decoder),
  so the default learning rate works for L2-normalised 384-d vectors (per-dimension std ~0.05)
  and for raw features alike; one scalar keeps the MSE geometry isotropic.
- Codebooks start from faiss k-means on the (randomly initialised) encoder's latents and
  residuals of a first pass over the training sample.
- After every epoch but the last, codes no item used in that epoch are re-seeded with the
  current residuals of random training items (their Adam moments are reset too).
- The residual chain is detached (r_{l+1} = r_l - sg[C_l[c_l]]): each codebook learns from its
  own level's residual only, as in lucidrains' ResidualVQ.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from psrq.errors import ArtifactError, ConfigError, InputError, TrainingError
from psrq.quantize.base import BaseQuantizer, resolve_codebook_sizes
from psrq.quantize.inputs import EmbeddingSource, OnInvalid
from psrq.quantize.kmeans import train_kmeans
from psrq.quantize.registry import DEFAULT_CODEBOOK_SIZE

# Rows pushed through the networks at once outside training (bounds activation memory).
INFERENCE_CHUNK = 8_192
# Prefix of state.npz keys holding torch weights (one array per state_dict entry).
WEIGHT_PREFIX = "net."
CodebookInit = Literal["kmeans", "random"]


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAENet(nn.Module):
    """Encoder MLP -> residual VQ over `len(codebook_sizes)` codebooks -> decoder MLP.

    Shapes: x [batch, dim] -> z [batch, latent_dim]; codebook l is [k_l, latent_dim];
    codes [batch, n_levels] (int64); reconstruction [batch, dim]. Inputs are expected already
    standardised (see the module docstring).
    """

    def __init__(
        self, dim: int, hidden_dims: Sequence[int], latent_dim: int, codebook_sizes: Sequence[int]
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden_dims]
        self.encoder = _mlp([dim, *hidden, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(hidden), dim])
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.zeros(int(k), latent_dim)) for k in codebook_sizes
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, dim] -> latent z [batch, latent_dim]."""
        return self.encoder(x)

    @staticmethod
    def nearest(r: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codeword: r [batch, latent], codebook [k, latent] -> [batch] int64."""
        # ||r||^2 is constant per row, so argmin of ||C||^2 - 2 r.C is the nearest codeword.
        scores = (codebook * codebook).sum(1) - 2.0 * r @ codebook.T
        return scores.argmin(dim=1)

    def quantize(
        self, z: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Residual VQ of z [batch, latent].

        Returns codes [batch, n_levels], the residual entering each level (each [batch, latent],
        carrying the encoder's gradient) and the chosen codewords (each [batch, latent], carrying
        the codebook's gradient).
        """
        residual = z
        codes, residuals, chosen = [], [], []
        for codebook in self.codebooks:
            idx = self.nearest(residual.detach(), codebook.detach())
            q = codebook[idx]
            codes.append(idx)
            residuals.append(residual)
            chosen.append(q)
            residual = residual - q.detach()
        return torch.stack(codes, dim=1), residuals, chosen

    def decode_codes(self, codes: torch.Tensor, n_levels: int) -> torch.Tensor:
        """codes [batch, >= n_levels] int64 -> reconstruction [batch, dim] from the first n_levels."""
        latent = sum(self.codebooks[lvl][codes[:, lvl]] for lvl in range(n_levels))
        return self.decoder(latent)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [batch, dim] -> (x_hat [batch, dim], codes [batch, n_levels], codebook loss, commitment loss)."""
        z = self.encode(x)
        codes, residuals, chosen = self.quantize(z)
        z_q = torch.stack(chosen).sum(0)
        # Straight-through: the decoder sees z_q, the encoder receives the gradient at z_q.
        z_st = z + (z_q - z).detach()
        codebook_loss = sum(
            F.mse_loss(q, r.detach()) for q, r in zip(chosen, residuals, strict=True)
        )
        commitment_loss = sum(
            F.mse_loss(r, q.detach()) for q, r in zip(chosen, residuals, strict=True)
        )
        return self.decoder(z_st), codes, codebook_loss, commitment_loss


# ---------------------------------------------------------------------------------------------
# determinism and devices
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for the block without leaking global state to the caller.

    The caller's RNG state and deterministic-algorithms flag are restored afterwards.
    warn_only: on CUDA some kernels have no deterministic variant; torch warns instead of failing.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    if device.type == "cuda":
        # cuBLAS is only reproducible with a fixed workspace; it reads this when CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def resolve_device(device: str, *, strict: bool) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when available) -> torch.device.

    strict (fit): an unavailable CUDA device is a ConfigError. Not strict (encoding a loaded
    model on a machine without a GPU): fall back to the CPU with a warning.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}"
        ) from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        if strict:
            raise ConfigError(
                f"device={device!r} but no CUDA GPU is available; use device='cpu' or 'auto'"
            )
        warnings.warn(
            f"RQVAE: device={device!r} is not available here; using the CPU", stacklevel=3
        )
        return torch.device("cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return dev


# ---------------------------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------------------------
class RQVAE(BaseQuantizer):
    """Residual-quantized VAE (encoder MLP -> residual VQ -> decoder MLP) trained with Adam.

    Parameters
    ----------
    n_levels: codes per item (residual levels).
    codebook_size: codewords per level, an int or one per level.
    latent_dim: width of the latent space the codebooks live in.
    hidden_dims: encoder hidden widths (the decoder mirrors them).
    epochs, batch_size, lr: Adam training schedule over the training sample.
    beta: weight of the commitment loss (pulls encoder outputs towards their codewords).
    codebook_init: "kmeans" (faiss k-means on first-pass latents/residuals) or "random" (N(0, 1)).
    reseed_dead_codes: after each epoch but the last, move codes unused in it onto residuals.
    seed: seeds torch (weights, shuffling, re-seeding) and faiss (k-means init).
    device: "cpu", "cuda", "cuda:N" or "auto".
    max_train_items: fit on a seeded sample of at most this many rows.
    on_invalid: "raise" on NaN/inf rows in the training input, or "drop" them.

    Fitted attributes: `net_` (RQVAENet), `input_mean_` [dim], `input_scale_` (float),
    `utilisation_` (fraction of each level's codes used by the training sample),
    `dead_codes_reseeded_` (codes re-seeded per level, summed over epochs),
    `loss_history_` (per-epoch mean losses).
    """

    kind: ClassVar[str] = "RQVAE"

    def __init__(
        self,
        *,
        n_levels: int = 3,
        codebook_size: int | list[int] = DEFAULT_CODEBOOK_SIZE,
        latent_dim: int = 32,
        hidden_dims: tuple[int, ...] | list[int] = (512, 256, 128),
        epochs: int = 50,
        batch_size: int = 256,
        lr: float = 1e-3,
        beta: float = 0.25,
        codebook_init: CodebookInit = "kmeans",
        reseed_dead_codes: bool = True,
        seed: int = 0,
        device: str = "cpu",
        max_train_items: int = 100_000,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        self.n_levels = n_levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.codebook_init = codebook_init
        self.reseed_dead_codes = reseed_dead_codes
        self.seed = seed
        self.device = device
        self.max_train_items = max_train_items
        self.on_invalid = on_invalid

    # ---- parameter checks ---------------------------------------------------------------------
    def _check_params(self) -> list[int]:
        if not _is_int(self.n_levels):
            raise InputError(f"RQVAE: n_levels must be a positive integer, got {self.n_levels!r}")
        sizes = resolve_codebook_sizes(self.codebook_size, int(self.n_levels))
        positive_ints = {
            "latent_dim": self.latent_dim,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_train_items": self.max_train_items,
        }
        for name, value in positive_ints.items():
            if not _is_int(value) or value < 1:
                raise InputError(f"RQVAE: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.hidden_dims, list | tuple) or any(
            not _is_int(h) or h < 1 for h in self.hidden_dims
        ):
            raise InputError(
                f"RQVAE: hidden_dims must be positive integers, got {self.hidden_dims!r}"
            )
        if not (_is_real(self.lr) and self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"RQVAE: lr must be a positive number, got {self.lr!r}")
        if not (_is_real(self.beta) and self.beta >= 0 and math.isfinite(self.beta)):
            raise InputError(f"RQVAE: beta must be a number >= 0, got {self.beta!r}")
        if self.codebook_init not in ("kmeans", "random"):
            raise InputError(
                f"RQVAE: codebook_init must be 'kmeans' or 'random', got {self.codebook_init!r}"
            )
        return sizes

    # ---- fit ----------------------------------------------------------------------------------
    def _fit(self, source: EmbeddingSource) -> None:
        sizes = self._check_params()
        device = resolve_device(self.device, strict=True)
        x = source.sample(int(self.max_train_items), seed=int(self.seed))
        if len(x) < max(sizes):
            raise InputError(
                f"{source.name}: cannot learn {max(sizes)} codes per level from {len(x)} items; "
                "use a smaller codebook_size or more items"
            )
        mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        scale = _rms(x, mean)
        xs = torch.from_numpy((x - mean) / scale).to(device)

        with _seeded_torch(int(self.seed), device):
            net = RQVAENet(source.dim, self.hidden_dims, int(self.latent_dim), sizes).to(device)
            if self.codebook_init == "kmeans":
                self._init_codebooks_kmeans(net, xs, name=source.name)
            else:
                for codebook in net.codebooks:
                    nn.init.normal_(codebook)
            history, reseeded = self._train(net, xs, device)

        self.codebook_sizes_ = sizes
        self.net_ = net.eval()
        self.device_ = device
        self.input_mean_ = mean
        self.input_scale_ = float(scale)
        self.loss_history_ = history
        self.dead_codes_reseeded_ = reseeded
        self.utilisation_ = self._utilisation(xs)

    def _init_codebooks_kmeans(self, net: RQVAENet, xs: torch.Tensor, *, name: str) -> None:
        """Codebook l = k-means of the level-l residuals of the untrained encoder's latents."""
        with torch.no_grad():
            residual = _chunked(net.encode, xs)
            for level, codebook in enumerate(net.codebooks):
                centroids = train_kmeans(
                    residual.cpu().numpy(),
                    codebook.shape[0],
                    seed=int(self.seed) + level,
                    name=f"{name} (RQVAE level {level} latents)",
                )
                codebook.copy_(torch.from_numpy(centroids))
                residual = (
                    residual - codebook[_chunked(lambda r, c=codebook: net.nearest(r, c), residual)]
                )

    def _train(
        self, net: RQVAENet, xs: torch.Tensor, device: torch.device
    ) -> tuple[list[dict[str, float]], list[int]]:
        """Adam over shuffled mini-batches; returns per-epoch losses and re-seeded code counts."""
        from tqdm.auto import tqdm

        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        # A dedicated generator makes shuffling and re-seeding independent of other torch users.
        gen = torch.Generator(device="cpu").manual_seed(int(self.seed))
        epochs = int(self.epochs)
        history: list[dict[str, float]] = []
        reseeded = [0] * len(net.codebooks)
        net.train()
        with tqdm(range(epochs), desc="RQVAE epochs", unit="epoch", disable=None) as bar:
            for epoch in bar:
                order = torch.randperm(xs.shape[0], generator=gen).to(device)
                record, usage = self._train_epoch(net, opt, xs, order)
                if not all(math.isfinite(v) for v in record.values()):
                    raise TrainingError(
                        f"RQVAE: the loss became non-finite in epoch {epoch + 1}; "
                        f"lower lr (now {self.lr}) or check the input scale"
                    )
                history.append(record)
                if self.reseed_dead_codes and epoch < epochs - 1:
                    dead = [torch.nonzero(counts == 0).flatten() for counts in usage]
                    for level, count in enumerate(_reseed_dead_codes(net, opt, xs, dead, gen)):
                        reseeded[level] += count
                bar.set_postfix(recon=f"{record['reconstruction']:.4f}")
        net.eval()
        return history, reseeded

    def _train_epoch(
        self, net: RQVAENet, opt: torch.optim.Optimizer, xs: torch.Tensor, order: torch.Tensor
    ) -> tuple[dict[str, float], list[torch.Tensor]]:
        """One pass over xs in `order`: (mean losses, per-level code usage counts)."""
        device = xs.device
        usage = [torch.zeros(cb.shape[0], dtype=torch.int64, device=device) for cb in net.codebooks]
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        for start in range(0, xs.shape[0], int(self.batch_size)):
            batch = xs[order[start : start + int(self.batch_size)]]
            x_hat, codes, codebook_loss, commitment_loss = net(batch)
            recon = F.mse_loss(x_hat, batch)
            loss = recon + codebook_loss + float(self.beta) * commitment_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for level, counts in enumerate(usage):
                counts += torch.bincount(codes[:, level], minlength=counts.shape[0])
            # Accumulated on the device: a .item() per step would stall a GPU every batch.
            losses = torch.stack([recon, codebook_loss, commitment_loss]).detach().double()
            sums += len(batch) * losses
        means = (sums / xs.shape[0]).cpu().tolist()
        return dict(zip(("reconstruction", "codebook", "commitment"), means, strict=True)), usage

    def _utilisation(self, xs: torch.Tensor) -> list[float]:
        """Fraction of each level's codes that the training sample uses."""
        with torch.no_grad():
            codes = _chunked(lambda b: self.net_.quantize(self.net_.encode(b))[0], xs)
        return [
            float(torch.unique(codes[:, level]).numel() / k)
            for level, k in enumerate(self.codebook_sizes_)
        ]

    # ---- encode / decode ----------------------------------------------------------------------
    def _encode(self, batch: np.ndarray) -> np.ndarray:
        xs = torch.from_numpy((batch - self.input_mean_) / np.float32(self.input_scale_)).to(
            self.device_
        )
        with torch.no_grad():
            codes = _chunked(lambda b: self.net_.quantize(self.net_.encode(b))[0], xs)
        return codes.cpu().numpy().astype(np.int32)

    def _decode(self, codes: np.ndarray, n_levels: int) -> np.ndarray:
        codes_t = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)).to(self.device_)
        with torch.no_grad():
            out = _chunked(lambda c: self.net_.decode_codes(c, n_levels), codes_t)
        return out.cpu().numpy() * np.float32(self.input_scale_) + self.input_mean_

    # ---- persistence --------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        # Torch weights go into state.npz as plain arrays: no pickle, checksummed by the manifest.
        weights = {
            WEIGHT_PREFIX + k: v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()
        }
        return {
            **weights,
            "input_mean": self.input_mean_,
            "input_scale": np.float32(self.input_scale_).reshape(1),
            "utilisation": self.utilisation_,
            "dead_codes_reseeded": self.dead_codes_reseeded_,
            "loss_history": self.loss_history_,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.device_ = resolve_device(self.device, strict=False)
        net = RQVAENet(self.dim_, self.hidden_dims, int(self.latent_dim), self.codebook_sizes_)
        weights = {
            k[len(WEIGHT_PREFIX) :]: torch.from_numpy(np.asarray(v))
            for k, v in state.items()
            if k.startswith(WEIGHT_PREFIX)
        }
        try:
            net.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ArtifactError(
                f"RQVAE: saved weights do not match the saved parameters: {e}"
            ) from e
        self.net_ = net.to(self.device_).eval()
        self.input_mean_ = np.asarray(state["input_mean"], dtype=np.float32)
        self.input_scale_ = float(np.asarray(state["input_scale"]).reshape(-1)[0])
        self.utilisation_ = [float(u) for u in state.get("utilisation", [])]
        self.dead_codes_reseeded_ = [int(c) for c in state.get("dead_codes_reseeded", [])]
        self.loss_history_ = list(state.get("loss_history", []))


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _rms(x: np.ndarray, mean: np.ndarray) -> np.float32:
    """Root-mean-square of the centred matrix (1 for constant input, so nothing divides by 0)."""
    sq = float(np.mean(np.square(x - mean, dtype=np.float64)))
    return np.float32(math.sqrt(sq)) if sq > 0 else np.float32(1.0)


def _chunked(fn: Any, x: torch.Tensor, chunk: int = INFERENCE_CHUNK) -> torch.Tensor:
    """Apply fn to row chunks of x [n, ...] and concatenate (keeps activations small)."""
    return (
        torch.cat([fn(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]) if len(x) else fn(x)
    )


def _reseed_dead_codes(
    net: RQVAENet,
    opt: torch.optim.Optimizer,
    xs: torch.Tensor,
    dead: list[torch.Tensor],
    gen: torch.Generator,
) -> list[int]:
    """Move each level's dead codewords onto level residuals of random training items.

    Each level draws its own items (an item whose residual just became a codeword has a zero
    residual at the next level), and levels go in order so level l's residuals already reflect
    the new codes of levels < l. The moved rows' Adam moments are zeroed so stale momentum does
    not drag them away again. Returns the number of codes re-seeded per level.
    """
    with torch.no_grad():
        for level, rows in enumerate(dead):
            if not rows.numel():
                continue
            picks = torch.randperm(xs.shape[0], generator=gen)[: rows.numel()].to(xs.device)
            residual = net.encode(xs[picks])
            for codebook in net.codebooks[:level]:
                residual = residual - codebook[net.nearest(residual, codebook)]
            codebook = net.codebooks[level]
            codebook[rows] = residual
            for moment in opt.state.get(codebook, {}).values():
                if torch.is_tensor(moment) and moment.shape == codebook.shape:
                    moment[rows] = 0.0
    return [int(rows.numel()) for rows in dead]
