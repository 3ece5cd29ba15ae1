"""lmbench: the same LSTM language model across deep-learning frameworks, measured fairly."""
__version__ = "0.1.0"
