"""TensorFlow Serving's REST and gRPC APIs: names and documents (spec), tensors (codec), the two adapters."""
