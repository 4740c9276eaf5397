"""Data sources of training procedures: synthetic task generators and file loaders, by name."""

from paperspec.runtime.data.base import (
    Field,
    GeneratorDef,
    Sampler,
    TensorSampler,
    all_generators,
    get_generator,
    register_generator,
)

__all__ = [
    "Field",
    "GeneratorDef",
    "Sampler",
    "TensorSampler",
    "all_generators",
    "get_generator",
    "register_generator",
]
