"""Portrait Lab's core: data, preprocessing, models, training, evaluation, prediction, explanation.

Never imports Streamlit. TensorFlow is imported lazily, only by the modules that need it, so the
data layer and the app's first page stay fast.
"""

from __future__ import annotations

__all__ = ["load_predictor"]


def load_predictor(path):
    """Load a run folder or a model folder under artifacts/ for prediction and explanation."""
    from portrait_core.predict import load_predictor as _load

    return _load(path)
