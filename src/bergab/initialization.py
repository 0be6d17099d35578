"""Weight initialization of a whole model by one named scheme.

The module is ``bergab.initialization``; its :func:`init` is also ``bergab.init``.

Example:
    >>> import torch
    >>> from bergab.initialization import init
    >>> model = init(torch.nn.Linear(4, 3), "orthogonal", seed=0)
    >>> w = model.weight.detach()
    >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-6)
    True
"""

from __future__ import annotations

import torch
from torch import nn

from bergab._validate import check_choice, check_int

__all__ = ["SCHEMES", "init"]

#: The schemes :func:`init` accepts.
SCHEMES = ("xavier", "kaiming", "orthogonal", "default")

_LAYERS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def _init_weight(w: torch.Tensor, scheme: str) -> None:
    if scheme == "xavier":
        nn.init.xavier_uniform_(w)
    elif scheme == "kaiming":
        nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
    else:
        nn.init.orthogonal_(w)


def _init_module(module: nn.Module, scheme: str) -> None:
    if isinstance(module, _LAYERS):
        _init_weight(module.weight, scheme)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.RNNBase):
        for name, p in module.named_parameters(recurse=False):
            if name.startswith("weight_hh"):
                # the recurrent matrix of each gate is square: orthogonal keeps its spectrum 1
                for chunk in p.detach().split(module.hidden_size, dim=0):
                    nn.init.orthogonal_(chunk)
            elif name.startswith("weight_ih"):
                for chunk in p.detach().split(module.hidden_size, dim=0):
                    _init_weight(chunk, scheme)
            elif name.startswith("weight_hr"):  # LSTM projection
                _init_weight(p, scheme)
            else:
                nn.init.zeros_(p)
    elif isinstance(module, _NORMS):
        if getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_running_stats()
    elif hasattr(module, "reset_parameters") and callable(module.reset_parameters):
        # embeddings and any other layer: torch's own initialization, re-drawn
        module.reset_parameters()


def init(model: nn.Module, scheme: str = "xavier", seed: int | None = None) -> nn.Module:
    """Re-initialize every layer of ``model`` in place with one scheme.

    - ``"xavier"`` (Glorot & Bengio 2010): weights of linear, convolutional and recurrent
      input matrices ``U(−a, a)`` with :math:`a = \\sqrt{6 / (\\text{fan\\_in} +
      \\text{fan\\_out})}`; suits tanh/sigmoid/linear networks.
    - ``"kaiming"`` (He et al. 2015): ``N(0, 2 / fan_in)``; suits ReLU networks.
    - ``"orthogonal"`` (Saxe et al. 2014): a (semi-)orthogonal weight matrix, gain 1.
    - ``"default"``: torch's own ``reset_parameters()`` of every layer.

    For the first three, biases are set to 0; recurrent (hidden-to-hidden) matrices of
    RNN/GRU/LSTM are orthogonal per gate whatever the scheme; normalization layers get
    weight 1, bias 0 and fresh running statistics; any other layer with
    ``reset_parameters()`` (e.g. ``nn.Embedding``) is reset by it. Modules are visited in
    ``model.modules()`` order.

    Args:
        model: the module to initialize (changed in place).
        scheme: one of ``"xavier"``, ``"kaiming"``, ``"orthogonal"``, ``"default"``.
        seed: when given, draws come from ``torch.manual_seed(seed)`` inside a forked
            generator, so the result is reproducible and torch's global random state is
            left untouched; ``None`` draws from the global generator.

    Returns:
        ``model`` itself.

    Example:
        >>> lin = init(nn.Linear(100, 50), "kaiming", seed=0)
        >>> round(lin.weight.std().item(), 2), lin.bias.abs().max().item()
        (0.14, 0.0)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_choice("scheme", scheme, SCHEMES)
    if seed is not None:
        seed = check_int("seed", seed, low=0)
    tensors = [*model.parameters(), *model.buffers()]
    devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            # seed only the generators this model draws from (never queue a lazy CUDA seed)
            torch.random.default_generator.manual_seed(seed)
            for d in devices:
                with torch.cuda.device(d):
                    torch.cuda.manual_seed(seed)
        with torch.no_grad():
            for module in model.modules():
                if scheme == "default":
                    if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                        module.reset_parameters()
                else:
                    _init_module(module, scheme)
    return model
