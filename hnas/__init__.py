"""hnas: hybrid neural architecture search (training-free proxies + GP-guided training)."""

__version__ = "0.1.0"
