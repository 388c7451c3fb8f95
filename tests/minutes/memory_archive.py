"""An imaging archive in memory for the write-back tests (it can be down, or refuse what it is given), and the
key-image marks a fiche points at. A stand-in because these tests drive the worker's failure paths; the same
worker against a real PACS runs in test_writeback's Orthanc test."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import pydicom
from pydicom.dataset import Dataset

__all__ = ["FakeArchive", "FakeResult", "Summary", "marks"]


@dataclass
class Summary:
    study_uid: str
    series_uid: str


@dataclass
class FakeResult:
    stored: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class FakeArchive:
    """An archive in memory that can be down, or refuse what it is given."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        self.datasets = list(datasets)
        self.stored: dict[str, bytes] = {}
        self.mode = "ok"

    async def list_series(self, study_uid: str) -> list[Summary]:
        return [Summary(study_uid, str(ds.SeriesInstanceUID)) for ds in self.datasets[:1]]

    async def series_metadata(self, study_uid: str, series_uid: str) -> list[Dataset]:
        return [ds for ds in self.datasets if ds.SeriesInstanceUID == series_uid]

    async def store(self, instances: Sequence[bytes]) -> FakeResult:
        if self.mode == "down":
            raise ConnectionError("PACS unreachable")
        result = FakeResult()
        for blob in instances:
            uid = str(pydicom.dcmread(io.BytesIO(blob)).SOPInstanceUID)
            if self.mode == "refuse":
                result.failed.append((uid, "failure reason 49152"))
            else:
                self.stored[uid] = blob
                result.stored.append(uid)
        return result


def marks(series: list[Dataset], *indexes: int) -> list[dict[str, object]]:
    return [{"study_uid": str(series[i].StudyInstanceUID), "series_uid": str(series[i].SeriesInstanceUID),
             "sop_uid": str(series[i].SOPInstanceUID), "description": f"Cible {n} : nodule spiculé"}
            for n, i in enumerate(indexes, 1)]
