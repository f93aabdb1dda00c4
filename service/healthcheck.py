"""``python3 -m service.healthcheck``: exit 0 when this machine's server answers ``/readyz`` with 200.

The container's health check; it reads the same settings as the server, so it keeps working when the
port is changed, with TLS (``https``; the certificate is not verified, since the check only talks to
127.0.0.1) and with protected health routes (it sends the first of ``SERVING_ADMIN_TOKENS``).
"""

from __future__ import annotations

import ssl
import sys
import urllib.error
import urllib.request

from service.settings import get_settings


def main(timeout_s: float = 2.0) -> int:
    settings = get_settings()
    tls = settings.tls_certfile is not None
    url = f"{'https' if tls else 'http'}://127.0.0.1:{settings.port}/readyz"
    request = urllib.request.Request(url)
    if settings.protect_health and settings.admin_tokens:
        request.add_header("Authorization", f"Bearer {settings.admin_tokens[0].get_secret_value()}")
    context = ssl._create_unverified_context() if tls else None  # loopback only: nothing to verify against
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
