"""Build and run ``deploy/Dockerfile``'s images with podman on a machine that cannot pull images.

No registry is reachable here, so the base image is made locally (``debootstrap`` Debian 12 minbase with
python3 and python3-venv, imported into podman) and passed as the Dockerfile's ``BASE``. Builds use
chroot isolation and the host network; pip inside the build gets the host's CA bundle as a read-only
mount (never copied into the image). Images are tagged with a hash of the build context, so an
unchanged tree reuses its image and older ones are removed. One build per target of the Dockerfile:
``serving`` (no TensorFlow), ``training`` (the Kubernetes Job's) and ``loadtest`` (compose's locust).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/bookworm-python:3.11-slim"
IMAGE_REPOS = {
    "serving": "localhost/keras-serving",
    "training": "localhost/keras-serving-train",
    "loadtest": "localhost/keras-serving-loadtest",
}
CONTEXT = [
    "deploy/Dockerfile", "deploy/tfprotos.py", ".dockerignore", "pyproject.toml", "README.md", "service",
    "training",
]  # fmt: skip
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SLIM_REMOVE = [
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/locale/*",
]
CONTAINERS_CONF = """[containers]
netns = "host"
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]

[engine]
runtime = "runc"
"""


class Podman:
    """``podman`` with a containers.conf of its own (host network, runc), leaving the system's alone."""

    def __init__(self, workdir: Path) -> None:
        self.conf = workdir / "containers.conf"
        self.conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def __call__(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0


def missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]


def context_hash(names: list[str] = CONTEXT) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = ROOT / name
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def ensure_base(podman: Podman) -> None:
    """Debian 12 minbase with python3 + python3-venv, made once per machine (~40 s); like Docker's slim
    images without apt's lists and caches, documentation and translations (~120 MB less)."""
    if podman.exists(BASE_IMAGE):
        return
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs), "http://deb.debian.org/debian"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        for pattern in SLIM_REMOVE:
            for path in rootfs.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True, capture_output=True,
            env=podman.env, timeout=300,
        )  # fmt: skip
        tar.wait()


def ensure_image(podman: Podman, target: str = "serving") -> str:
    """The image of ``target`` for the current tree, built if needed (minutes); returns its name."""
    return build(podman, IMAGE_REPOS[target], context_hash(), ROOT / "deploy" / "Dockerfile", ROOT, target)


def image_size(podman: Podman, image: str) -> int:
    """The image's size in bytes, as ``podman images`` reports it (every layer, base included)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def build(
    podman: Podman, repo: str, tag: str, dockerfile: Path, context: Path, target: str | None = None
) -> str:
    """``repo:tag`` built from ``dockerfile`` on the local base image unless it exists; older tags are removed."""
    image = f"{repo}:{tag}"
    if podman.exists(image):
        return image
    ensure_base(podman)
    args = ["build", "--isolation=chroot", "--network=host", "--build-arg", f"BASE={BASE_IMAGE}"]
    if target is not None:
        args += ["--target", target]
    if HOST_CA.exists():
        args += [
            "-v",
            f"{HOST_CA}:/etc/ssl/certs/host-ca.crt:ro",
            "--build-arg",
            "PIP_CERT=/etc/ssl/certs/host-ca.crt",
        ]
    podman(*args, "-f", str(dockerfile), "-t", image, str(context), timeout=1800)
    for line in podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo).stdout.split():
        if line != image:
            podman("rmi", "--force", line, check=False)
    return image


def ensure_prometheus_image(podman: Podman) -> str:
    """Prometheus from Debian's package on the local base (tests/deploy/prometheus.Dockerfile, ~1 min)."""
    dockerfile = ROOT / "tests" / "deploy" / "prometheus.Dockerfile"
    tag = context_hash([str(dockerfile.relative_to(ROOT))])
    return build(podman, "localhost/keras-serving-prometheus", tag, dockerfile, dockerfile.parent)
