"""Model serving: the BentoML service, protocols, data plane, batching and runtimes.

The server does not phone home. Two of its libraries do by default: BentoML reports usage to
``t.bentoml.com`` when a server starts and stops (and every 12 hours while it runs), and ONNX Runtime 1.32
sends telemetry to ``mobile.events.data.microsoft.com`` about ten seconds after its first inference,
keeping a device id and an event store under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` (both
seen with strace on our machines). Importing this package turns both off before either library reads its
switch (:data:`VENDOR_TELEMETRY_OFF`); a value already in the environment is kept, so
``BENTOML_DO_NOT_TRACK=false`` or ``ORT_DISABLE_TELEMETRY=0`` turns them back on. ``run.sh`` and the image set
the same defaults for the ``bentoml serve`` process itself, which reports before it imports the service.
"""

import os

__version__ = "0.1.0"

VENDOR_TELEMETRY_OFF = {"BENTOML_DO_NOT_TRACK": "true", "ORT_DISABLE_TELEMETRY": "1"}
"""The environment switches that keep BentoML's usage tracking and ONNX Runtime's telemetry off."""

for _name, _value in VENDOR_TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)
