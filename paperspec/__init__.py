"""paperspec: compile .pspec model specs to checked PyTorch modules."""

__version__ = "0.1.0"
