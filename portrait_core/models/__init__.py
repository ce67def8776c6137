"""Four architectures: catalog.py says what each is (Keras-free), registry.py builds them.

`from portrait_core.models import CATALOG` does not import Keras; the registry's names
(create_model, get_spec, ...) import it on first use.
"""

from portrait_core.models.catalog import CATALOG, ModelInfo, check_options, get_info

_REGISTRY = ("MODELS", "ModelSpec", "create_model", "get_spec", "model_names")


def __getattr__(name: str):
    if name in _REGISTRY:
        from portrait_core.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CATALOG", "ModelInfo", "check_options", "get_info", *_REGISTRY]
