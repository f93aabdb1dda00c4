"""Everything that knows BentoML: the ASGI app it mounts, the fast lane, the gRPC host, the patches."""
