"""lmlm: Large Memory Language Models — models that look facts up instead of memorizing them."""

__version__ = "0.1.0"
