"""Models trained once per test session, shared by the test modules that need them."""

import functools

from gemmstone.compiler.models import train_digits_cnn


@functools.cache
def digits():
    """``(model, (x_train, y_train, x_test, y_test), float_accuracy)``."""
    return train_digits_cnn()
