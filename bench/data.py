"""Where the shared Synthea reference data is, and which bundles a run loads."""

from __future__ import annotations

import gzip
import os
import random
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "FHIR_SERVER_SHARED_DATA"


class DataMissing(Exception):
    """The shared reference data is not where the harness looks for it."""


def shared_data_dir() -> Path:
    return Path(os.environ.get(ENV_VAR, ROOT.parent / "shared" / "data"))


def synthea_dir() -> Path:
    d = shared_data_dir() / "synthea-r4"
    if not d.is_dir():
        raise DataMissing(
            f"Synthea bundles not found at {d}: the shared data is expected at "
            f"<repo>/../shared/data (or set {ENV_VAR}). Ingest cannot run without it."
        )
    return d


@dataclass(frozen=True)
class BundleSet:
    prelude: list[Path]  # organizations and practitioners: loaded first, in order
    patients: list[Path]
    available_patients: int
    compressed_bytes: int


def bundle_set(patients: int | None, seed: int = 20240601) -> BundleSet:
    """The prelude bundles and `patients` patient bundles (all when None), a fixed random sample."""
    d = synthea_dir()
    files = sorted(d.glob("*.json.gz"))
    prelude = [
        f for f in files if f.name.startswith(("hospitalInformation", "practitionerInformation"))
    ]
    prelude.sort(key=lambda f: 0 if f.name.startswith("hospital") else 1)
    all_patients = [f for f in files if f not in prelude]
    chosen = list(all_patients)
    if patients is not None and patients < len(all_patients):
        chosen = sorted(random.Random(seed).sample(all_patients, patients))
    size = sum(f.stat().st_size for f in prelude + chosen)
    return BundleSet(prelude, chosen, len(all_patients), size)


def read_bundle(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data
