"""FLOP counts for the ops torch's own counter does not count: formulas, and a warning for the rest.

Extraction (`marl_gym.workloads.extract`) reads torch's `FlopCounterMode` around every node. It counts
matrix products, convolutions and attention (a multiply-add = 2 FLOPs); for everything else it reports
0. A node with a count of 0 gets, in this order:

1. a **recurrent-layer formula** (`rnn_flops`) for `nn.LSTM`, `nn.GRU` and `nn.RNN`: torch's counter
   sees nothing inside `aten::lstm` (one fused op) and only the matrix products of a GRU, so these
   are always counted here (the formula replaces torch's count);
2. an **element-wise formula**: `ELEMENTWISE_FLOPS[op]` per output element for the op types whose
   cost is a few operations per element (ReLU, add, norms, softmax ...; pooling per input element), or
   `FUNCTION_FLOPS[name]` per element (of the larger of input and output) for known functional ops of
   op type "other": comparisons and reductions (1 per element), losses (cross-entropy 6 per logit ...)
   and pure data movement (`cat`, `clone`, `gather`, type conversion ...: 0 FLOPs, a memory-bound copy);
3. otherwise a **warning** naming the op and the node (`UnknownFlopsWarning`), 1 FLOP per element as a
   stand-in, and the node listed in the graph's `meta["flops_estimated"]` ({node: op}). No op falls
   back silently.

Element-wise formulas are estimates of the order of magnitude (what the roofline needs for
memory-bound ops), not instruction counts; the recurrent formulas count every multiply-add of the gates
(2 FLOPs), every bias add and every element-wise gate operation (a sigmoid or tanh evaluation = 1).
"""

from __future__ import annotations

import warnings
from typing import Any

ELEMENTWISE_FLOPS: dict[str, float] = {
    "relu": 1,
    "add": 1,
    "mul": 1,
    "dropout": 1,
    "batchnorm": 2,  # eval mode: one scale and one shift per element
    "layernorm": 8,  # mean, variance, normalise, scale, shift
    "gelu": 8,  # erf or tanh approximation, a handful of ops per element
    "activation": 4,
    "softmax": 5,  # max, subtract, exp, sum, divide
    "pool": 1,  # per *input* element: each is read into one window reduction
    "embedding": 0,  # a gather, no arithmetic
}
"""Estimated FLOPs per element for op types whose cost torch's counter leaves at 0 (see the module docstring)."""

_COMPARE_OR_REDUCE = (
    "eq ne lt le gt ge logical_and logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_not "
    "and or xor invert all any sum mean amax amin max min argmax argmin cumsum cumprod diff norm var std prod "
    "abs neg sign clamp clamp_min clamp_max clip maximum minimum where masked_fill floor ceil round "
    "pow square sqrt rsqrt reciprocal log log1p exp2 cos sin isnan isinf isfinite nan_to_num fmod remainder "
    "floor_divide floordiv lerp"
).split()
_DATA_MOVEMENT = (
    "cat concat concatenate stack hstack vstack clone contiguous copy copy_ to type float half bfloat16 double "
    "int long bool reshape view flatten unflatten gather index_select take scatter scatter_add index_copy "
    "index_put index_fill masked_scatter masked_select repeat repeat_interleave tile pad constant_pad_nd "
    "tril triu flip roll narrow narrow_copy zeros_like ones_like full_like empty_like new_zeros new_ones new_full "
    "new_empty new_tensor fill fill_ zero_ getitem setitem unsqueeze squeeze expand expand_as permute transpose "
    "movedim split chunk unbind select slice detach pixel_shuffle pixel_unshuffle channel_shuffle"
).split()
_LOSSES = {
    "cross_entropy": 6.0,  # log-softmax (5) and the picked term (1) per logit
    "nll_loss": 1.0,
    "mse_loss": 3.0,  # difference, square, sum
    "l1_loss": 3.0,
    "smooth_l1_loss": 4.0,
    "huber_loss": 4.0,
    "binary_cross_entropy": 4.0,
    "binary_cross_entropy_with_logits": 6.0,
    "kl_div": 3.0,
}
FUNCTION_FLOPS: dict[str, float] = {
    **dict.fromkeys(_COMPARE_OR_REDUCE, 1.0),
    **dict.fromkeys(_DATA_MOVEMENT, 0.0),
    **_LOSSES,
}
"""FLOPs per element (of the larger of input and output) of known functional ops of op type "other"."""

MODULE_FLOPS: dict[str, float] = {
    "Flatten": 0.0,
    "Unflatten": 0.0,
    "ZeroPad1d": 0.0,
    "ZeroPad2d": 0.0,
    "ZeroPad3d": 0.0,
    "ConstantPad1d": 0.0,
    "ConstantPad2d": 0.0,
    "ConstantPad3d": 0.0,
    "ReflectionPad2d": 0.0,
    "ReplicationPad2d": 0.0,
    "PixelShuffle": 0.0,
    "PixelUnshuffle": 0.0,
    "ChannelShuffle": 0.0,
    "Upsample": 4.0,  # bilinear: 4 weighted taps per output element (nearest: a copy; an upper estimate)
    "Identity": 0.0,
}
"""FLOPs per element of leaf modules of op type "other" (by class name)."""

UNKNOWN_FLOPS_PER_ELEMENT = 1.0
"""Stand-in for an op with no count and no formula (it is warned about and listed in the graph's meta)."""


class UnknownFlopsWarning(UserWarning):
    """An op had no FLOP count from torch and no formula here: its node got a stand-in estimate."""


def rnn_flops(module: Any, input_tokens: int) -> int:
    """FLOPs of an `nn.LSTM`, `nn.GRU` or `nn.RNN` run over `input_tokens` (sequence length x batch).

    Per token, layer and direction, with H = hidden size, P = output size (`proj_size` or H), I = the
    layer's input size (`input_size` for layer 0, directions x P above), b = 1 with biases else 0:

    * LSTM: 4 gates, each a product with W_ih (I) and W_hh (P): 8H(I + P); two bias vectors: 8Hb; the
      two products added: 4H; 3 sigmoids and 1 tanh: 4H; c' = f*c + i*g: 3H; h' = o*tanh(c'): 2H;
      with a projection, h' = W_hr h': 2HP more.  Total 8H(I + P) + 8Hb + 13H (+ 2HP).
    * GRU: 3 gates: 6H(I + H); biases 6Hb; r, z: add the products 2H, sigmoids 2H;
      n = tanh(W_in x + r * (W_hn h)): multiply, add, tanh 3H; h' = (1 - z)*n + z*h: 4H.
      Total 6H(I + H) + 6Hb + 11H.
    * RNN (tanh or ReLU): 2H(I + H) + 2Hb + 2H (the sum and the nonlinearity).
    """
    kind = type(module).__name__
    hidden = int(module.hidden_size)
    out = int(getattr(module, "proj_size", 0) or 0) or hidden
    dirs = 2 if module.bidirectional else 1
    b = 1 if module.bias else 0
    total = 0
    for layer in range(int(module.num_layers)):
        inp = int(module.input_size) if layer == 0 else dirs * out
        if kind == "LSTM":
            per = 8 * hidden * (inp + out) + 8 * hidden * b + 13 * hidden + (2 * hidden * out if out != hidden else 0)
        elif kind == "GRU":
            per = 6 * hidden * (inp + hidden) + 6 * hidden * b + 11 * hidden
        else:
            per = 2 * hidden * (inp + hidden) + 2 * hidden * b + 2 * hidden
        total += dirs * per
    return total * int(input_tokens)


RNN_CLASSES = ("LSTM", "GRU", "RNN")
"""Recurrent layers counted by `rnn_flops` (by class name: subclasses of torch's RNNBase with these names)."""


def is_rnn(module: Any) -> bool:
    return type(module).__name__ in RNN_CLASSES and hasattr(module, "hidden_size") and hasattr(module, "num_layers")


def elementwise_formula(op: str, function: str | None, module_class: str | None) -> float | None:
    """FLOPs per element for a node torch counted 0 for, or None when no formula is known (warn)."""
    if op in ELEMENTWISE_FLOPS:
        return ELEMENTWISE_FLOPS[op]
    if op != "other":
        return None  # conv, linear, matmul, attention with no count: something torch should have counted
    if function is not None:
        return FUNCTION_FLOPS.get(function.strip("_"))
    if module_class is not None:
        return MODULE_FLOPS.get(module_class)
    return None


def warn_unknown(node: str, what: str) -> None:
    warnings.warn(
        f"no FLOP count for {what} (node {node!r}): torch's counter gives 0 and marl_gym has no formula; "
        f"using {UNKNOWN_FLOPS_PER_ELEMENT:g} FLOP per element (listed in meta['flops_estimated'])",
        UnknownFlopsWarning,
        stacklevel=4,
    )
