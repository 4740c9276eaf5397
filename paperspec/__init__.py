"""paperspec: compile .pspec model specs to checked PyTorch modules."""

from paperspec.compiler.api import Spec, load, loads
from paperspec.compiler.diagnostics import SpecError

__version__ = "0.1.0"
__all__ = ["Spec", "SpecError", "load", "loads", "__version__"]
