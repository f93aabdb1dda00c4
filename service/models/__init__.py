"""The model repository as the server sees it: the registry, one version's life, the scan, serving.yaml."""
