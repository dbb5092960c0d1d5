"""microgpt: a GPT in scalar autograd that you can read, exact bit for bit to
Karpathy's original microgpt, with a compiled engine that trains many times
faster (set MICROGPT_PURE=1 for the interpreted one: the same numbers).

Learn, in this order: each lesson prints what it teaches; read its source,
src/microgpt/lessons/NAME.py, beside what it prints.

    microgpt lesson autograd     backward() is the chain rule
    microgpt lesson new_op       your own op, checked by gradcheck
    microgpt lesson xor          a small network learns XOR, and its boundary
    microgpt lesson attention    causal attention: nothing above the diagonal
    microgpt lesson names        train the GPT on names, and sample from it

The same path as notebooks: pip install "microgpt-exact[notebook]", then
jupyter lab docs/notebooks (in a checkout).

The main API, one module each:

    microgpt.Value       a number that remembers how it was made; .backward()
    microgpt.no_grad     with no_grad(): build no graph (sampling, evaluation)
    microgpt.engine      Value, and dot, linear, vsum: one node for a whole sum
    microgpt.nn          GPT, GPTConfig, cross_entropy, softmax
    microgpt.optim       Adam, linear_decay, clip_grad_norm
    microgpt.data        load_documents, Tokenizer
    microgpt.train       Run (a whole training run, step by step), TrainConfig
    microgpt.sample      sample, samples, sample_many
    microgpt.gradcheck   gradcheck: backward() against finite differences
    microgpt.graph       a computation graph, drawn as text or Graphviz DOT
    microgpt.monitor     gradient_report: gradient norms per weight matrix
    microgpt.plot        loss and attention pictures (needs matplotlib)
    microgpt.lessons     the lessons above, as modules

What `microgpt train` and `microgpt sweep` do around the steps (checkpoints,
logs, the training driver, sweeps) is in microgpt.checkpoint, runlog, driver
and sweep. The other modules (backend, cli, console, errors, files, limits,
settings) are the command's machinery, not an API.
"""

from typing import TYPE_CHECKING

from microgpt._version import __version__
from microgpt.backend import COMPILED, ENGINE_NAME
from microgpt.backend import engine as _engine

if TYPE_CHECKING:  # the type checker reads engine.py; at run time, the selected engine's
    from microgpt.engine import Value
else:
    Value = _engine.Value

no_grad = _engine.no_grad

__all__ = ["COMPILED", "ENGINE_NAME", "Value", "__version__", "no_grad"]
