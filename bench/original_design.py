"""The original microgpt's design, as a baseline to measure against.

A scalar autograd node that keeps its children and local gradients in tuples,
wraps every number operand in a constant leaf node, and sorts the graph with
a recursive closure (whose reference cycle leaves every step's graph to the
cyclic garbage collector). The arithmetic is the same as `microgpt`'s, in the
same order, so the losses are identical: only the speed differs.

Used by the benchmarks (bench/) and by the tests that check the equality
(tests/test_exact_everywhere.py trains and samples it beside microgpt).
"""

from __future__ import annotations

import math
import random
from typing import Any


class Node:
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(
        self, data: Any, children: tuple[Any, ...] = (), local_grads: tuple[Any, ...] = ()
    ):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other: Any) -> Node:
        other = other if isinstance(other, Node) else Node(other)
        return Node(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other: Any) -> Node:
        other = other if isinstance(other, Node) else Node(other)
        return Node(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k: Any) -> Node:
        return Node(self.data**k, (self,), (k * self.data ** (k - 1),))

    def log(self) -> Node:
        return Node(math.log(self.data), (self,), (1 / self.data,))

    def exp(self) -> Node:
        return Node(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self) -> Node:
        return Node(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self) -> Node:
        return self * -1

    def __radd__(self, other: Any) -> Node:
        return self + other

    def __sub__(self, other: Any) -> Node:
        return self + (-other)

    def __rsub__(self, other: Any) -> Node:
        return other + (-self)

    def __rmul__(self, other: Any) -> Node:
        return self * other

    def __truediv__(self, other: Any) -> Node:
        return self * other**-1

    def __rtruediv__(self, other: Any) -> Node:
        return other * self**-1

    def backward(self) -> None:
        order: list[Node] = []
        seen: set[Node] = set()

        def visit(node: Node) -> None:  # recursive, as the original
            if node not in seen:
                seen.add(node)
                for child in node._children:
                    visit(child)
                order.append(node)

        visit(self)
        self.grad = 1
        for node in reversed(order):
            for child, local in zip(node._children, node._local_grads):
                child.grad += local * node.grad


class OriginalGPT:
    """Default-shaped GPT (RMSNorm, ReLU) over `Node`s, trained one document
    per step with Adam and linear learning-rate decay."""

    def __init__(
        self,
        docs: list[str],
        seed: int = 42,
        n_layer: int = 1,
        n_embd: int = 16,
        n_head: int = 4,
        block_size: int = 16,
        num_steps: int = 1000,
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.docs = list(docs)
        rng.shuffle(self.docs)
        self.chars = sorted(set("".join(self.docs)))
        self.bos = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self.n_layer, self.n_embd, self.n_head = n_layer, n_embd, n_head
        self.block_size, self.head_dim = block_size, n_embd // n_head
        self.num_steps = num_steps

        def matrix(rows: int, cols: int) -> list[list[Node]]:
            return [[Node(rng.gauss(0, 0.08)) for _ in range(cols)] for _ in range(rows)]

        sd = {
            "wte": matrix(self.vocab_size, n_embd),
            "wpe": matrix(block_size, n_embd),
            "lm_head": matrix(self.vocab_size, n_embd),
        }
        for i in range(n_layer):
            for name, shape in (
                ("attn_wq", (n_embd, n_embd)),
                ("attn_wk", (n_embd, n_embd)),
                ("attn_wv", (n_embd, n_embd)),
                ("attn_wo", (n_embd, n_embd)),
                ("mlp_fc1", (4 * n_embd, n_embd)),
                ("mlp_fc2", (n_embd, 4 * n_embd)),
            ):
                sd[f"layer{i}.{name}"] = matrix(*shape)
        self.sd = sd
        self.params = [p for mat in sd.values() for row in mat for p in row]
        self.m = [0.0] * len(self.params)
        self.v = [0.0] * len(self.params)
        self.step = 0

    @staticmethod
    def linear(x: list[Node], w: list[list[Node]]) -> list[Node]:
        return [sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]  # type: ignore[misc]

    @staticmethod
    def softmax(logits: list[Node]) -> list[Node]:
        top = max(val.data for val in logits)
        exps = [(val - top).exp() for val in logits]
        total = sum(exps)
        return [e / total for e in exps]

    @staticmethod
    def rmsnorm(x: list[Node]) -> list[Node]:
        ms = sum(xi * xi for xi in x) / len(x)
        scale = (ms + 1e-5) ** -0.5
        return [xi * scale for xi in x]

    def forward(self, token_id: int, pos_id: int, keys: list[Any], values: list[Any]) -> list[Node]:
        sd, hd = self.sd, self.head_dim
        x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
        x = self.rmsnorm(x)
        for li in range(self.n_layer):
            residual = x
            x = self.rmsnorm(x)
            q = self.linear(x, sd[f"layer{li}.attn_wq"])
            keys[li].append(self.linear(x, sd[f"layer{li}.attn_wk"]))
            values[li].append(self.linear(x, sd[f"layer{li}.attn_wv"]))
            heads: list[Node] = []
            for h in range(self.n_head):
                s = h * hd
                qh = q[s : s + hd]
                kh = [k[s : s + hd] for k in keys[li]]
                vh = [v[s : s + hd] for v in values[li]]
                logits = [
                    sum(qh[j] * kh[t][j] for j in range(hd)) / hd**0.5 for t in range(len(kh))
                ]
                w = self.softmax(logits)  # type: ignore[arg-type]
                heads.extend(sum(w[t] * vh[t][j] for t in range(len(vh))) for j in range(hd))
            x = self.linear(heads, sd[f"layer{li}.attn_wo"])
            x = [a + b for a, b in zip(x, residual)]
            residual = x
            x = self.rmsnorm(x)
            x = [xi.relu() for xi in self.linear(x, sd[f"layer{li}.mlp_fc1"])]
            x = self.linear(x, sd[f"layer{li}.mlp_fc2"])
            x = [a + b for a, b in zip(x, residual)]
        return self.linear(x, sd["lm_head"])

    def loss(self, doc: str) -> Node:
        """Mean next-token loss over `doc` (the forward half of a step)."""
        tokens = [self.bos] + [self.chars.index(ch) for ch in doc] + [self.bos]
        n = min(self.block_size, len(tokens) - 1)
        keys: list[Any] = [[] for _ in range(self.n_layer)]
        values: list[Any] = [[] for _ in range(self.n_layer)]
        losses = []
        for pos in range(n):
            probs = self.softmax(self.forward(tokens[pos], pos, keys, values))
            losses.append(-probs[tokens[pos + 1]].log())
        total: Node = (1 / n) * sum(losses)  # type: ignore[assignment]
        return total

    def sample(self, rng: random.Random, temperature: float = 0.5) -> str:
        """One name, drawn as the original draws it: from BOS, each next
        character from softmax(logits / temperature), until BOS or a full context."""
        keys: list[Any] = [[] for _ in range(self.n_layer)]
        values: list[Any] = [[] for _ in range(self.n_layer)]
        token_id = self.bos
        out = []
        for pos_id in range(self.block_size):
            logits = self.forward(token_id, pos_id, keys, values)
            probs = self.softmax([logit / temperature for logit in logits])
            token_id = rng.choices(range(self.vocab_size), weights=[p.data for p in probs])[0]
            if token_id == self.bos:
                break
            out.append(self.chars[token_id])
        return "".join(out)

    def train_step(self) -> float:
        """One step: loss on the next document, backward, Adam. Returns the loss."""
        step = self.step
        loss = self.loss(self.docs[step % len(self.docs)])
        loss.backward()
        lr_t = 0.01 * (1 - step / self.num_steps)
        b1, b2 = 0.85, 0.99
        for i, p in enumerate(self.params):
            self.m[i] = b1 * self.m[i] + (1 - b1) * p.grad
            self.v[i] = b2 * self.v[i] + (1 - b2) * p.grad**2
            m_hat = self.m[i] / (1 - b1 ** (step + 1))
            v_hat = self.v[i] / (1 - b2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat**0.5 + 1e-8)
            p.grad = 0
        self.step += 1
        return float(loss.data)
