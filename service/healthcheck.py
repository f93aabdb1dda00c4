"""``python3 -m service.healthcheck``: exit 0 when this machine's server answers ``/readyz`` with 200.

The container's health check; it reads the same ``SERVING_PORT`` as the server, so it keeps working
when the port is changed.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from service.settings import get_settings


def main(timeout_s: float = 2.0) -> int:
    url = f"http://127.0.0.1:{get_settings().port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
