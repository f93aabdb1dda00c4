"""Training pipeline: data loaders, the tutorial's architectures, training, export to the model repository.

Training needs Keras on the TensorFlow backend (``model.export`` writes a TensorFlow SavedModel). Keras fixes
its backend when first imported, so it is imported here with ``KERAS_BACKEND=tensorflow``; the variable is
then restored, so processes started later (e.g. a server on JAX) inherit the caller's environment.
"""

import logging
import os
import sys

if "keras" not in sys.modules:
    _previous = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        import keras  # noqa: F401
    finally:
        if _previous is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = _previous

logging.getLogger("tensorflow").setLevel(logging.ERROR)  # tf.function retracing notes on small predicts
