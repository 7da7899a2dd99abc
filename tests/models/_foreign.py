"""A function outside scikit-learn, NumPy and SciPy, for the trust test."""


def double(x):
    """Twice ``x``."""
    return x * 2
