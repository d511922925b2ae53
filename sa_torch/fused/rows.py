"""The rows of the small buffers the fused SA passes share: one name each, for Python, C and Triton.

The fast path packs its per-channel quantities into a few buffers, one row per quantity:

- ``params`` (N_PARAM, K): the layer's six parameters, in the official order.
- ``coef`` (N_COEF, B, C): what the forward computes per (sample, channel) and the backward
  reuses (the quantities of the derivation in :mod:`sa_torch.fused`).
- ``grads`` (N_GRAD, B, C): the sums the Triton backward keeps for the parameter gradients.

Python indexes them with these enums (``coef[Coef.ALPHA]``); ``cpu.c`` defines the same rows as
``COEF_ALPHA`` and so on, and :mod:`sa_torch.fused.triton` as constexpr constants of the same
names, taken from here (tests/test_fused_rows.py checks that the three agree).
"""
import enum


class Param(enum.IntEnum):
    """Rows of params (N_PARAM, K)."""
    CWEIGHT = 0
    CBIAS = 1
    SWEIGHT = 2
    SBIAS = 3
    GN_WEIGHT = 4
    GN_BIAS = 5


class Coef(enum.IntEnum):
    """Rows of coef (N_COEF, B, C)."""
    SHIFT = 0         # s, the channel's value at its first position
    OFFSET = 1        # d = m - s: the mean is m = s + d, and x - m = (x - s) - d
    RSTD = 2          # r = 1 / sqrt(var + eps)
    ALPHA = 3         # alpha = A r
    BETA = 4          # beta = P m + Q: the gate is sigmoid(alpha (x - m) + beta)
    P = 5             # P, the channel's, for every sample


class Grad(enum.IntEnum):
    """Rows of the Triton backward's grads (N_GRAD, B, C)."""
    SZ = 0            # Sz = sum(gz)
    SZC = 1           # Szc = sum(gz (x - m))


def c_names() -> dict[str, int]:
    """Every row as C and Triton name it (``COEF_ALPHA``), and the row counts (``N_COEF``)."""
    names = {}
    for rows in (Param, Coef, Grad):
        prefix = rows.__name__.upper()
        names.update({f"{prefix}_{row.name}": int(row) for row in rows})
        names[f"N_{prefix}"] = len(rows)
    return names
