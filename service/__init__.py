"""Model serving: the BentoML service, protocols, data plane, batching and runtimes."""

__version__ = "0.1.0"
