"""``serving-cli``: predict from the command line with a PNG, a CSV file or JSON.

Examples::

    serving-cli models
    serving-cli predict cnn --image digit.png
    serving-cli predict mlp --csv patient.csv
    serving-cli predict linear --json '[[5.0]]'
    serving-cli compare cnn --window 5m      # champion/challenger report (service.client.compare)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from service.client import Client, ClientError, compare
from service.client.inputs import csv_batch, image_batch


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="serving-cli", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:3000", help="server address (default %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list models, versions and states")
    pr = sub.add_parser("predict", help="send one prediction")
    pr.add_argument("model")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="PNG/JPEG for an image model (resized, greyscaled)")
    src.add_argument("--csv", type=Path, help="CSV file, one row per instance")
    src.add_argument("--json", help="JSON batch or {input: batch}, inline or @file")
    pr.add_argument("--version", type=int)
    pr.add_argument("--label")
    pr.add_argument(
        "--invert", action=argparse.BooleanOptionalAction, default=None, help="invert image colours"
    )
    compare.add_parser(sub)
    return p


def _inputs(args: argparse.Namespace, client: Client) -> Any:
    if args.json is not None:
        text = Path(args.json[1:]).read_text() if args.json.startswith("@") else args.json
        return json.loads(text)
    versions = client.model(args.model)["versions"]
    ready = [v for v in versions if v["state"] == "ready" and v["inputs"]] or versions
    shape = ready[-1]["inputs"][0]["shape"]
    if args.image is not None:
        return image_batch(args.image, shape, args.invert)
    return csv_batch(args.csv, shape)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "compare":
        return compare.run(args)
    client = Client(args.url)
    try:
        if args.command == "models":
            result: Any = client.models()
        else:
            result = client.predict(args.model, _inputs(args, client), version=args.version, label=args.label)
            labels = _class_labels(client, args.model, result)
            if labels:
                result["classes"] = labels
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def _class_labels(client: Client, model: str, result: dict[str, Any]) -> list[str] | None:
    """For classifiers, the most likely class of each row (by the model's class labels)."""
    version = next(v for v in client.model(model)["versions"] if v["version"] == result["version"])
    names = version.get("class_labels")
    outputs = list(result["outputs"].values())
    if not names or len(outputs) != 1 or len(names) < 2:
        return None
    rows = outputs[0]
    if len(names) == 2 and all(len(r) == 1 for r in rows):
        return [names[int(r[0] >= 0.5)] for r in rows]
    return [names[max(range(len(r)), key=r.__getitem__)] for r in rows]


if __name__ == "__main__":
    sys.exit(main())
