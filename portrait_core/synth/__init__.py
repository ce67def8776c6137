"""The synthetic montage generator: Portrait Lab's embedded default data set.

`generate(out, n, seed)` writes n drawn portraits with labels in the AI Hub montage layout
(N.png + N.json), so every part of the app can run without the real (account-only) data set.
"""

from __future__ import annotations

from portrait_core.synth.generate import generate

__all__ = ["generate"]
