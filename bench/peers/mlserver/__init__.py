"""MLServer 1.7.1 peer: a custom ONNX Runtime model class with adaptive batching (see ``model.py``)."""
