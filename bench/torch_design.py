"""microgpt's default model in PyTorch, as a yardstick for the benchmarks.

The same GPT (token and position embeddings, RMSNorm without a learned scale,
multi-head causal self-attention without biases, a ReLU MLP, residuals, a
language-model head), the same initial weights, document order and Adam, in
float64 on one thread. What differs is the way it computes: a step runs the
whole document through the model at once, as matrices, with a causal mask
where microgpt goes position by position over scalars. Matrix products and
sums add their terms in another order than microgpt does, so the losses agree
to about 1e-15 relative, not bit for bit.

    run = Run.start(docs, TrainConfig(seed=42))
    model = TorchGPT(run)            # before run trains: it copies the weights
    model.train_step()               # the loss of run.docs[0]
"""

from __future__ import annotations

import random
import warnings
from typing import Any

with warnings.catch_warnings():
    # torch warns on import when NumPy is missing; nothing here uses NumPy
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch
    import torch.nn.functional as F

NORM_EPS = 1e-5  # as microgpt.nn


def single_thread() -> None:
    """One thread for PyTorch's kernels, as microgpt runs on one."""
    torch.set_num_threads(1)


def rmsnorm(x: torch.Tensor) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the last dimension, no learned scale."""
    return x * (x.square().mean(dim=-1, keepdim=True) + NORM_EPS) ** -0.5


def check_supported(run: Any) -> None:
    """This model has microgpt's default architecture and training only."""
    c, t = run.model.config, run.train_config
    if (c.norm, c.activation, c.dropout, t.grad_clip) != ("rmsnorm", "relu", 0.0, None):
        raise ValueError(
            "TorchGPT supports only rmsnorm, relu, no dropout and no gradient clipping"
        )


class TorchGPT:
    """The weights of a microgpt `Run`, as one flat float64 vector, and its
    training (`train_step`) and sampling (`sample`)."""

    def __init__(self, run: Any) -> None:
        check_supported(run)
        single_thread()
        self.config = run.model.config
        self.tokenizer = run.tokenizer
        self.docs = list(run.docs)
        self.train_config = run.train_config
        self.step = run.step
        # One leaf tensor holds every weight, so that Adam is a few operations
        # on whole vectors; the matrices are views of it, made in `weights()`.
        self.names = list(run.model.state_dict)
        self.shapes = [(len(m), len(m[0])) for m in run.model.state_dict.values()]
        data = [p.data for matrix in run.model.state_dict.values() for row in matrix for p in row]
        self.flat = torch.tensor(data, dtype=torch.float64, requires_grad=True)
        self.m = torch.zeros_like(self.flat, requires_grad=False)  # Adam's moments
        self.v = torch.zeros_like(self.flat, requires_grad=False)
        block = self.config.block_size
        self.future = torch.ones(block, block, dtype=torch.bool).triu(1)  # the causal mask

    def weights(self) -> dict[str, torch.Tensor]:
        """name -> matrix [n_out, n_in], each a view of the flat vector."""
        pieces = self.flat.split([rows * cols for rows, cols in self.shapes])
        return {
            name: piece.view(shape) for name, piece, shape in zip(self.names, pieces, self.shapes)
        }

    def attention(self, x: torch.Tensor, w: dict[str, torch.Tensor], li: int) -> torch.Tensor:
        """Multi-head causal self-attention over the n positions of x [n, n_embd]."""
        n, heads = x.shape[0], self.config.n_head
        q, k, v = (
            (x @ w[f"layer{li}.attn_w{name}"].T).view(n, heads, -1).transpose(0, 1)
            for name in "qkv"
        )
        logits = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5  # [heads, n, n]
        logits = logits.masked_fill(self.future[:n, :n], float("-inf"))
        out = torch.softmax(logits, dim=-1) @ v  # [heads, n, head_dim]
        return out.transpose(0, 1).reshape(n, -1) @ w[f"layer{li}.attn_wo"].T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """The logits [n, vocab_size] after each of the n tokens."""
        w = self.weights()
        n = tokens.shape[0]
        x = rmsnorm(w["wte"][tokens] + w["wpe"][:n])
        for li in range(self.config.n_layer):
            x = x + self.attention(rmsnorm(x), w, li)
            hidden = torch.relu(rmsnorm(x) @ w[f"layer{li}.mlp_fc1"].T)
            x = x + hidden @ w[f"layer{li}.mlp_fc2"].T
        return x @ w["lm_head"].T

    def loss(self, doc: str) -> torch.Tensor:
        """Mean next-token cross-entropy over the first block_size predictions."""
        ids = self.tokenizer.encode_document(doc)
        n = min(self.config.block_size, len(ids) - 1)
        tokens = torch.tensor(ids[: n + 1])
        return F.cross_entropy(self.forward(tokens[:n]), tokens[1:])

    def train_step(self) -> float:
        """Forward and backward on the next document, then Adam; the loss."""
        t = self.train_config
        step = self.step
        loss = self.loss(self.docs[step % len(self.docs)])
        loss.backward()
        self.adam(step, t.lr * (1 - step / t.steps))
        self.step = step + 1
        return loss.item()

    @torch.no_grad()
    def adam(self, step: int, lr_t: float) -> None:
        """microgpt's Adam update, the same operations, on every weight at once."""
        t = self.train_config
        grad = self.flat.grad
        assert grad is not None
        self.m = t.beta1 * self.m + (1 - t.beta1) * grad
        self.v = t.beta2 * self.v + (1 - t.beta2) * grad**2
        m_hat = self.m / (1 - t.beta1 ** (step + 1))
        v_hat = self.v / (1 - t.beta2 ** (step + 1))
        self.flat -= lr_t * m_hat / (v_hat**0.5 + t.eps)
        self.flat.grad = None

    @torch.no_grad()
    def sample(self, rng: random.Random, temperature: float = 0.5) -> str:
        """One document, drawn as microgpt's `sample` draws it (the same calls
        on `rng`). Without a key/value cache: each position reruns the prefix."""
        bos = self.tokenizer.bos
        ids = [bos]
        choices = range(self.tokenizer.vocab_size)
        for _ in range(self.config.block_size):
            logits = self.forward(torch.tensor(ids))[-1]
            probs = torch.softmax(logits / temperature, dim=-1)
            token_id = rng.choices(choices, weights=probs.tolist())[0]
            if token_id == bos:
                break
            ids.append(token_id)
        return self.tokenizer.decode(ids)
