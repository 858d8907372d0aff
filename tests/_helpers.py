"""Assertions and stand-ins shared by the test modules (imported as ``tests._helpers``; no
fixtures here)."""

import numpy as np
import torch
from torch import nn

#: Relative tolerance for float32 results computed another way: another batch size, another CPU
#: kernel (``ATEN_CPU_CAPABILITY=default|avx2|avx512``) or another thread count. Such a change
#: reorders float32 sums, so each output moves by a few float32 epsilons (1.2e-7) per layer,
#: times the width it sums over; through a network, a log-density, a Fisher quadratic form
#: (ROSE) or a softmax over 100 x cosine (CLIP) that reaches ~1e-5 to 1e-4 of the scores'
#: magnitude (measured: ICE 1.7e-5, ROSE 1.4e-4, AMA 6.6e-7 on a 2-core AMD EPYC). Exact
#: equality stays for the same computation run twice (same batch size, device and threads).
FLOAT32_RTOL = 1e-4


def assert_float32_close(actual, desired, rtol: float = FLOAT32_RTOL) -> None:
    """``actual == desired`` up to float32 rounding, relative to the largest ``|desired|``.

    The rounding error of a float32 sum scales with the magnitude of what is summed, not with
    the result, so a row whose score is near zero gets the same absolute slack as the others.
    """
    actual, desired = np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64)
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


class StandInCLIP(nn.Module):
    """An open_clip-style model: a random linear image encoder, a hashed bag-of-words text one.

    Its weights come from ``seed`` and leave torch's global generator as it was.
    """

    visual = type("V", (), {"image_size": 8})()

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.image = nn.Linear(3 * 8 * 8, 5)
            self.words = nn.Embedding(64, 5)

    def encode_image(self, pixels):
        return self.image(pixels.flatten(1))

    def encode_text(self, tokens):
        return self.words(tokens).sum(1)


def hash_tokenizer(texts):
    """Word ids by a hash of their letters, padded with id 0 to 8 per text."""
    ids = [[sum(map(ord, w)) % 63 + 1 for w in t.split()] for t in texts]
    return torch.tensor([row + [0] * (8 - len(row)) for row in ids])
