"""explainlab: config-driven experiments on how deep networks decide."""

__version__ = "0.1.0"
