"""Four architectures behind one registry; see registry.py."""

from portrait_core.models.registry import MODELS, ModelSpec, create_model, get_spec, model_names

__all__ = ["MODELS", "ModelSpec", "create_model", "get_spec", "model_names"]
