"""A small Python client for the native API (standard library only); input helpers in :mod:`.inputs`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np

__all__ = ["Client", "ClientError"]


class ClientError(RuntimeError):
    """The server answered with an error; ``status`` and ``body`` carry its answer.

    (Not :class:`service.errors.ServingError`, which is the server's own error hierarchy.)"""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class Client:
    """``Client("http://127.0.0.1:3000").predict("cnn", images)`` -> ``{"outputs": ...}``."""

    def __init__(self, url: str = "http://127.0.0.1:3000", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
            except ValueError:
                body = {"error": exc.reason}
            raise ClientError(exc.code, body) from None

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")["models"]

    def model(self, name: str) -> dict[str, Any]:
        for m in self.models():
            if m["name"] == name:
                return m
        raise ClientError(404, {"error": f"model {name!r} not found"})

    def predict(
        self,
        model: str,
        inputs: np.ndarray | list[Any] | dict[str, Any],
        version: int | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Predict; ``inputs`` is one batch (array or nested list) or ``{input name: batch}``."""

        def plain(v: Any) -> Any:
            return v.tolist() if isinstance(v, np.ndarray) else v

        body: dict[str, Any] = {"model": model}
        body["inputs"] = (
            {k: plain(v) for k, v in inputs.items()} if isinstance(inputs, dict) else plain(inputs)
        )
        if version is not None:
            body["version"] = version
        if label is not None:
            body["label"] = label
        return self._call("POST", "/v1/predict", body)
