"""KServe V2 / Open Inference Protocol: datatypes and documents (spec), tensors (codec), the two adapters."""
