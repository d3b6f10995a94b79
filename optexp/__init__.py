"""optexp: configuration-driven experiments on neural-network optimization and regularization."""

__version__ = "0.2.0"
