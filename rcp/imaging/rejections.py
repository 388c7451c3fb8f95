"""IHE IOCM rejection notes read back: what the service's own lists no longer show.

A rejection note (IHE RAD TF-3 4.66, Imaging Object Change Management) is a Key Object Selection document whose
title (Concept Name Code Sequence) is one of CID 7011: (DCM, 113001) "Rejected for Quality Reasons", 113037
"Rejected for Patient Safety Reasons", 113038 "Incorrect Modality Worklist Entry", 113039 "Data Retention Policy
Expired". The instances it lists in its Current Requested Procedure Evidence Sequence (PS3.3 C.17.2.1) are to be
hidden by every viewer, and the note itself is not for display either. An IOCM-aware archive acts on it; one that
is not (Orthanc, as the tests run it) only stores it, so the service hides them itself when it lists a study's
series (the viewer's series list) and counts a patient's studies (the case's study list), whoever wrote the note:
the service's own corrections (``rcp.minutes.dicom.rejection_notes``) or the PACS's.

Reading the notes costs one metadata request per KO series of the study, and only for studies that hold KO
series at all (``ModalitiesInStudy``).

    >>> note = Dataset()
    >>> note.SOPInstanceUID, note.SeriesInstanceUID = "1.2.3.9.1", "1.2.3.9"
    >>> title = Dataset()
    >>> title.CodeValue, title.CodingSchemeDesignator = "113001", "DCM"
    >>> note.ConceptNameCodeSequence = [title]
    >>> sop = Dataset()
    >>> sop.ReferencedSOPInstanceUID = "1.2.3.4.5"
    >>> series = Dataset()
    >>> series.SeriesInstanceUID, series.ReferencedSOPSequence = "1.2.3.4", [sop]
    >>> study = Dataset()
    >>> study.ReferencedSeriesSequence = [series]
    >>> note.CurrentRequestedProcedureEvidenceSequence = [study]
    >>> rejected = Rejections.from_notes([note])
    >>> rejected.instances, rejected.notes
    ({'1.2.3.4.5': '1.2.3.4'}, {'1.2.3.9.1': '1.2.3.9'})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pydicom.dataset import Dataset

from rcp.imaging.archive import InstanceSummary, SeriesSummary, StudySummary

__all__ = ["REJECTION_TITLES", "Rejections", "is_rejection_note", "study_rejections", "visible_series",
           "visible_study"]

#: CID 7011 "Rejected for ..." document titles (DCM): a KOS so titled is an IOCM rejection note.
REJECTION_TITLES = frozenset({"113001", "113037", "113038", "113039"})


class _SeriesArchive(Protocol):
    """The part of ``rcp.imaging.archive.Archive`` read here."""

    async def list_series(self, study_uid: str) -> list[SeriesSummary]: ...

    async def list_instances(self, study_uid: str, series_uid: str) -> list[InstanceSummary]: ...

    async def series_metadata(self, study_uid: str, series_uid: str) -> list[Dataset]: ...


def is_rejection_note(ds: Dataset) -> bool:
    """Whether ``ds`` is a KOS titled with a CID 7011 code (IHE IOCM)."""
    titles = ds.get("ConceptNameCodeSequence") or []
    return any(str(t.get("CodeValue", "")) in REJECTION_TITLES and str(t.get("CodingSchemeDesignator", "")) == "DCM"
               for t in titles)


@dataclass(frozen=True)
class Rejections:
    """What a study's rejection notes hide: rejected instances and the notes, each SOP UID -> its series UID."""

    instances: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_notes(cls, headers: Iterable[Dataset]) -> Rejections:
        """From KO headers (full metadata); those that are not rejection notes are ignored."""
        instances: dict[str, str] = {}
        notes: dict[str, str] = {}
        for ds in headers:
            if not is_rejection_note(ds):
                continue
            notes[str(ds.SOPInstanceUID)] = str(ds.SeriesInstanceUID)
            for study in ds.get("CurrentRequestedProcedureEvidenceSequence") or []:
                for series in study.get("ReferencedSeriesSequence") or []:
                    for sop in series.get("ReferencedSOPSequence") or []:
                        instances[str(sop.ReferencedSOPInstanceUID)] = str(series.SeriesInstanceUID)
        return cls(instances=instances, notes=notes)

    def hidden_per_series(self) -> Counter[str]:
        """How many instances each series loses (rejected ones and the notes themselves)."""
        return Counter([*self.instances.values(), *self.notes.values()])

    def hides(self, sop_uid: str) -> bool:
        return sop_uid in self.instances or sop_uid in self.notes


async def study_rejections(archive: _SeriesArchive, study_uid: str,
                           series: Sequence[SeriesSummary] | None = None) -> Rejections:
    """The rejection notes of ``study_uid`` read from its KO series (``series``: the study's list, if at hand)."""
    listed = series if series is not None else await archive.list_series(study_uid)
    headers: list[Dataset] = []
    for s in listed:
        if s.modality == "KO":
            headers.extend(await archive.series_metadata(study_uid, s.series_uid))
    return Rejections.from_notes(headers)


async def _visible(archive: _SeriesArchive, series: Sequence[SeriesSummary],
                   rejected: Rejections) -> list[SeriesSummary]:
    hidden = rejected.hidden_per_series()
    shown = []
    for s in series:
        if not hidden.get(s.series_uid):
            shown.append(s)
            continue
        # Counted from the instances themselves: an archive may not give NumberOfSeriesRelatedInstances.
        left = [i for i in await archive.list_instances(s.study_uid or "", s.series_uid)
                if not rejected.hides(i.sop_uid)]
        if left:
            shown.append(replace(s, instance_count=len(left)))
        # else: every instance of the series is rejected (or a note): the series is not shown at all
    return shown


async def visible_series(archive: _SeriesArchive, study_uid: str) -> list[SeriesSummary]:
    """The study's series as the viewer lists them: rejection notes and rejected instances left out (a series
    with nothing else left is not listed; the others count only what they still show)."""
    series = await archive.list_series(study_uid)
    if not any(s.modality == "KO" for s in series):
        return series
    return await _visible(archive, series, await study_rejections(archive, study_uid, series))


async def visible_study(archive: _SeriesArchive, study: StudySummary) -> StudySummary:
    """``study`` as a study list shows it: modalities and counts without what its rejection notes hide. Only a
    study holding KO series is read further (a rejection note is a KO)."""
    if "KO" not in study.modalities:
        return study
    series = await archive.list_series(study.study_uid)
    shown = await _visible(archive, series, await study_rejections(archive, study.study_uid, series))
    if len(shown) == len(series) and all(a == b for a, b in zip(shown, series, strict=True)):
        return study
    kept = {s.series_uid: s.instance_count for s in shown}
    hidden = sum(s.instance_count - kept.get(s.series_uid, 0) for s in series)
    return replace(study, modalities=tuple(sorted({s.modality for s in shown if s.modality})),
                   series_count=len(shown), instance_count=max(study.instance_count - hidden, 0))
