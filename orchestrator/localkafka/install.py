"""Java and Maven on this machine, and the broker's jars from Maven Central.

The jars come through ``pom.xml`` next to this module (``mvn dependency:copy-dependencies``)
and are cached in ``${ORCH_CACHE_DIR:-~/.cache/orchestrator}/kafka-<version>/lib``. They are
fetched into a temporary folder that is renamed into place, so an interrupted fetch leaves no
half cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator.config import cache_dir
from orchestrator.errors import LocalKafkaError

log = logging.getLogger("orchestrator.localkafka")

MIN_JAVA = 17


def pom_path() -> Path:
    """The Maven project that lists the broker's jars (shipped inside the package)."""
    return Path(__file__).resolve().parent / "pom.xml"


def kafka_version(pom: Path | None = None) -> str:
    """The ``<kafka.version>`` property of the pom (e.g. ``"4.1.1"``)."""
    pom = pom or pom_path()
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as e:
        raise LocalKafkaError(
            f"Cannot read the Kafka version from {pom} ({e}); restore that file from git."
        ) from None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and (element.text or "").strip():
            return element.text.strip()
    raise LocalKafkaError(f"{pom} has no <kafka.version> property; restore that file from git.")


def lib_dir(version: str) -> Path:
    """The broker's classpath folder for ``version``."""
    return cache_dir() / f"kafka-{version}" / "lib"


# --------------------------------------------------------------------------- prerequisites


def find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists, else ``java`` on ``PATH``, else ``None``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def java_major_version(java: str) -> int | None:
    """The major version of ``java`` (8 for ``1.8.0_x``, 17 for ``17.0.15``), or ``None``."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> str:
    """The java executable to run the broker with; raises if it is missing or older than 17."""
    java = find_java()
    version = java_major_version(java) if java else None
    if version is None or version < MIN_JAVA:
        raise LocalKafkaError(
            f"Java {MIN_JAVA} or newer is needed to run the local Kafka broker; install it "
            "(e.g. apt-get install openjdk-17-jre-headless) or set ORCH_BOOTSTRAP to use an existing cluster."
        )
    return java


def require_mvn() -> str:
    """The ``mvn`` executable used to fetch the broker's jars; raises if it is missing."""
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            "Maven (mvn) is needed once to download the local Kafka broker; install it "
            "(e.g. apt-get install maven) or set ORCH_BOOTSTRAP to use an existing cluster."
        )
    return mvn


# --------------------------------------------------------------------------- fetching jars


def jars_complete(lib: Path, version: str) -> bool:
    """Whether ``lib`` holds the broker jar and the slf4j-to-log4j2 binding the pom adds."""
    return (lib / f"kafka_2.13-{version}.jar").is_file() and any(lib.glob("log4j-slf4j-impl-*.jar"))


def ensure_jars(version: str | None = None) -> Path:
    """The broker's classpath folder, fetched from Maven Central when missing or incomplete."""
    version = version or kafka_version()
    lib = lib_dir(version)
    if jars_complete(lib, version):
        return lib
    mvn = require_mvn()
    lib.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lib-fetching-", dir=lib.parent))
    try:
        log.info("Fetching Kafka %s from Maven Central into %s (first run only)...", version, lib)
        _run_maven(mvn, staging / "lib", version)
        if lib.exists() and not jars_complete(lib, version):  # left by an older pom
            lib.rename(staging / "old-lib")
        with contextlib.suppress(OSError):  # a concurrent fetch may have won the rename
            (staging / "lib").rename(lib)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_abandoned_fetches(lib.parent)
    if not jars_complete(lib, version):
        raise LocalKafkaError(
            f"Maven finished but {lib} lacks kafka_2.13-{version}.jar or log4j-slf4j-impl; "
            f"check {pom_path()} and try again."
        )
    return lib


def _remove_abandoned_fetches(version_dir: Path, older_than_s: float = 3600) -> None:
    """Delete staging folders left by fetches that were killed (e.g. SIGKILL) long ago."""
    cutoff = time.time() - older_than_s
    for staging in version_dir.glob(".lib-fetching-*"):
        with contextlib.suppress(OSError):
            if staging.stat().st_mtime < cutoff:
                shutil.rmtree(staging, ignore_errors=True)


def _run_maven(mvn: str, out_dir: Path, version: str) -> None:
    """Copy the pom's runtime dependencies into ``out_dir``."""
    command = [
        mvn, "-B", "-q", "-f", str(pom_path()), "dependency:copy-dependencies",
        f"-DoutputDirectory={out_dir}", "-DincludeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).splitlines()
        errors = [line for line in output if "ERROR" in line] or output or ["no output"]
        raise LocalKafkaError(
            f"Downloading Kafka {version} with Maven failed ({errors[0].strip()[:300]}); check "
            "network access to Maven Central (or ~/.m2/settings.xml) and try again, or set "
            "ORCH_BOOTSTRAP to use an existing cluster."
        )
