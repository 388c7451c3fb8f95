"""The signed decision, written back into the patient's imaging file as DICOM objects.

Two objects per signed version, built here from the source images' own headers (so the patient and study
attributes are exactly those the archive already files them under), stored by the imaging archive (STOW-RS):

- a **Key Object Selection** document (IHE Key Image Note; PS3.3 A.35.4, template TID 2010) titled
  (DCM, 128203, "For Tumor Board") from CID 7010, referencing the images marked in the meeting. TID 2010 allows one
  "Key Object Description" text (113012) and the KOS IOD allows no children under IMAGE items (PS3.3 A.35.4.3.1.2),
  so each mark's description goes in that one text, numbered in the order of the image references;
- the signed fiche as **Encapsulated PDF** (PS3.3 A.45.1), concept name LOINC 34794-8 as in the CI-SIS FRCP.

When a version is replaced (an amendment) or withdrawn, an **IHE IOCM rejection note** (RAD TF-3 4.66, "Rejection
Note Stored") is a third object: a Key Object Selection whose document title is (DCM, 113001, "Rejected for
Quality Reasons"), or (DCM, 113037, "Rejected for Patient Safety Reasons") for a version filed under the wrong
patient, referencing that version's KOS and PDF, so that IOCM-aware viewers and archives hide them (and the
service's own lists do, ``rcp.imaging.rejections``). One note per study: a KOS covers one study here too.

Series layout, so that clinicians find the board's documents in the patient's study: every version of one case's
fiche goes into the same series per study, "RCP - fiche de décision" (modality DOC, series number 9002), its
instances numbered by version; the key-image notes likewise into "RCP - images clés" (KO, 9001), and the rejection
notes into "RCP - notes de rejet (IOCM)" (KO, 9003). A series per document set (the CDA/XDS set id of
``rcp.minutes.oids.document_ids``), not per version: a correction lands next to what it corrects, and the
rejection note hides the older instance.

Patient identity (PS3.3 C.7.1.1): ``PatientID`` and ``IssuerOfPatientID`` are copied from the source images (a
PACS files the objects by them), and the national INS is added as an ``OtherPatientIDsSequence`` item qualified
by the INS OID in ``IssuerOfPatientIDQualifiersSequence`` (ISO universal entity id), as the French IHE PAM
extension maps it — only when the identity is *qualified* (the national identity rules share the INS of no other). A KOS covers a single study (highdicom, and most archives' expectation), so marks spanning
several studies give one KOS per study.

Instance UIDs are derived from the version's SHA-256 and series UIDs from the document set
(``generate_uid(entropy_srcs=...)``): a write-back retried after a lost acknowledgement stores the same instances
again instead of duplicates, and a rejection note names the objects of a version without asking the archive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import highdicom as hd
from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, TM

from rcp.identifiers import DicomPatient, Identifier, Match, ServicePatient, ins_system, match
from rcp.minutes.fiche import Fiche, KeyImage, PatientIdentity
from rcp.minutes.oids import document_ids
from rcp.minutes.versions import SignedVersion

__all__ = [
    "ENCAPSULATED_PDF_STORAGE",
    "FOR_TUMOR_BOARD",
    "KOS_STORAGE",
    "PDF_SERIES_DESCRIPTION",
    "REJECTED_FOR_PATIENT_SAFETY",
    "REJECTED_FOR_QUALITY",
    "WrongPatient",
    "check_fiche_patient",
    "encapsulated_fiche",
    "fiche_study",
    "key_image_notes",
    "rejection_notes",
    "writeback_uids",
]

#: CID 7010 "Key Object Selection Document Title": (DCM, 128203, "For Tumor Board").
FOR_TUMOR_BOARD = Code("128203", "DCM", "For Tumor Board")
#: CID 7011 "Rejected for Quality Reasons" (IHE IOCM): what a replaced or withdrawn version's objects become.
REJECTED_FOR_QUALITY = Code("113001", "DCM", "Rejected for Quality Reasons")
#: CID 7011 (IHE IOCM): a version withdrawn because it was filed under the wrong patient.
REJECTED_FOR_PATIENT_SAFETY = Code("113037", "DCM", "Rejected for Patient Safety Reasons")
KOS_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.59")
ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
#: CI-SIS FRCP document type (LOINC 34794-8), with the CI-SIS display name.
FRCP_CONCEPT = ("34794-8", "LN", "CR de réunion de concertation pluridisciplinaire")
INS_OID = "1.2.250.1.213.1.4.8"
_PARIS = ZoneInfo("Europe/Paris")
MANUFACTURER = "RCP"
#: (series number, series description) per object kind: the "RCP" series of the patient's study.
_SERIES = {"kos": (9001, "RCP - images clés"), "pdf": (9002, "RCP - fiche de décision"),
           "reject": (9003, "RCP - notes de rejet (IOCM)")}
PDF_SERIES_DESCRIPTION = _SERIES["pdf"][1]


def writeback_uids(fiche: Fiche, version: SignedVersion, kind: str, study_uid: str) -> tuple[UID, UID]:
    """(series UID, instance UID) for ``kind`` ("kos", "pdf" or "reject") of ``version`` in ``study_uid``.

    The series is the document set's (every version of the case's fiche in one series per study and kind), the
    instance the version's: both stable across retries and rebuilds.
    """
    set_id, _unique = document_ids(fiche, version)
    series = generate_uid(entropy_srcs=[set_id, kind, study_uid, "series"])
    instance = generate_uid(entropy_srcs=[version.sha256, kind, study_uid, "instance"])
    return series, instance


def fiche_study(fiche: Fiche) -> str | None:
    """The study the fiche PDF is filed in: the first of the case's studies holding a marked image, else the first
    of its studies (the one the board reviewed); None without studies (nothing to attach the fiche to)."""
    marked = {k.study_uid for k in fiche.key_images}
    if marked:
        return next((uid for uid in fiche.study_uids if uid in marked), None)
    return fiche.study_uids[0] if fiche.study_uids else None


def _local(moment: datetime) -> datetime:
    return moment.astimezone(_PARIS)


def _add_ins(ds: Dataset, fiche: Fiche) -> None:
    """The INS as an other patient id, qualified by its OID (PS3.3 C.7.1.1, Issuer of Patient ID Macro C.24).

    Only for a *qualified* identity (RNIV; ``rcp.identifiers.ins_may_leave``): otherwise the objects carry the
    local identifier the archive files the study under, and no INS.
    """
    ins = fiche.patient.shared_ins
    if not ins or ins == ds.get("PatientID"):
        return
    qualifier = Dataset()
    qualifier.UniversalEntityID = fiche.patient.ins_system or INS_OID
    qualifier.UniversalEntityIDType = "ISO"
    item = Dataset()
    item.PatientID = ins
    item.IssuerOfPatientID = ins_system(qualifier.UniversalEntityID)
    item.IssuerOfPatientIDQualifiersSequence = [qualifier]
    item.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [item]


class WrongPatient(ValueError):
    """A study the decision would be written into names another patient than the fiche's (field names only)."""

    def __init__(self, verdict: Match) -> None:
        self.verdict = verdict
        super().__init__(
            "The study this decision would be written into is not the fiche's patient's ("
            + verdict.message + "): nothing was stored in the imaging archive, and the signed decision stands. "
            "Detach the study from the case (or have the PACS correct it), then sign an amendment to write back.")


def fiche_patient(patient: PatientIdentity) -> ServicePatient:
    """The fiche's patient (as signed) as the identity rule takes it."""
    identifiers = []
    if patient.local_id:
        identifiers.append(Identifier("IPP", patient.local_id, patient.local_id_issuer))
    if patient.ins:
        identifiers.append(Identifier(ins_system(patient.ins_system), patient.ins))
    return ServicePatient(identifiers=tuple(identifiers), family_name=patient.family_name,
                          given_names=patient.given_names, birth_date=patient.birth_date, sex=patient.sex)


def check_fiche_patient(fiche: Fiche, sources: Sequence[Dataset]) -> None:
    """Refuse (``WrongPatient``) when any source header names another patient than the fiche's, by the one rule of
    ``rcp.identifiers``.

    The KOS and the PDF copy their Patient Module from these headers and add the fiche's INS: written into another
    patient's study, they would file the decision under that patient's name with this patient's INS (issue 14).
    """
    ours = fiche_patient(fiche.patient)
    for source in sources:
        verdict = match(ours, DicomPatient.from_dataset(source))
        if not verdict:
            raise WrongPatient(verdict)


def _check_patient(sources: Sequence[Dataset]) -> None:
    ids = {(str(s.get("PatientID", "")), str(s.get("IssuerOfPatientID", ""))) for s in sources}
    if len(ids) != 1:
        # Never mix two patients' images in one decision's objects (PS3.3 C.7.1.1: one patient per study).
        raise ValueError(
            "the marked images do not all carry the same PatientID/IssuerOfPatientID; "
            "check the case's studies before writing back"
        )


def _description(fiche: Fiche, marks: Sequence[KeyImage], version: SignedVersion) -> str:
    head = f"{fiche.board.name} {fiche.meeting_date.isoformat()} - v{version.number} SHA-256 {version.sha256[:16]}"
    lines = [head]
    for i, mark in enumerate(marks, 1):
        frame = f" (frame {mark.frame})" if mark.frame else ""
        lines.append(f"{i}. {mark.description}{frame}".rstrip())
    return "\n".join(lines)


def _observer(version: SignedVersion) -> hd.sr.ObserverContext:
    """The account that signed ``version`` (users table, by signed_by) as the person observer (TID 1002), never a
    typed name."""
    return hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept("121006", "DCM", "Person"),
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            # The signer's name in its PN components (rcp.people); free text as a single component otherwise,
            # the trailing caret saying so (PS3.5 6.2.1.2).
            name=version.signer.person.as_dicom_pn() if version.signer and version.signer.person
            else (version.signer.name if version.signer else "RCP").replace("^", " ")[:63] + "^"
        ),
    )


def _stamp(document: Dataset, moment: datetime, evidence: Dataset, fiche: Fiche) -> None:
    """What every KOS we write carries beyond highdicom's defaults: UTF-8, local content and creation times, the
    issuer of the patient id and the INS (a qualified identity only)."""
    local = _local(moment)
    document.SpecificCharacterSet = "ISO_IR 192"
    document.ContentDate = DA(local.strftime("%Y%m%d"))
    document.ContentTime = TM(local.strftime("%H%M%S"))
    document.InstanceCreationDate = DA(local.strftime("%Y%m%d"))
    document.InstanceCreationTime = TM(local.strftime("%H%M%S"))
    if "IssuerOfPatientID" in evidence:
        document.IssuerOfPatientID = evidence.IssuerOfPatientID
    _add_ins(document, fiche)


def rejection_notes(fiche: Fiche, version: SignedVersion, rejected: Sequence[Dataset], *, title: Code,
                    at: datetime, note: str, by: SignedVersion | None = None) -> list[Dataset]:
    """IHE IOCM rejection notes for ``version``'s objects ``rejected`` (its KOS and PDF, as built by
    :func:`key_image_notes` and :func:`encapsulated_fiche`): one Key Object Selection per study, titled ``title``
    (:data:`REJECTED_FOR_QUALITY` or :data:`REJECTED_FOR_PATIENT_SAFETY`), referencing each object as a COMPOSITE
    item and in the Current Requested Procedure Evidence Sequence (IHE RAD TF-3 4.66.4.1.3.1).

    ``note`` is the Key Object Description ("replaced by version 2"; no free text that could carry more); ``by``
    the version whose signer rejects (the correction), else the observer is the rejected version's signer.
    Same inputs, same UIDs: a retried store repeats the same note.
    """
    if title.value not in {REJECTED_FOR_QUALITY.value, REJECTED_FOR_PATIENT_SAFETY.value}:
        raise ValueError(f"a rejection note is titled 113001 or 113037 (CID 7011); got {title.value!r}")
    studies: dict[str, list[Dataset]] = {}
    for ds in rejected:
        studies.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    notes: list[Dataset] = []
    for study_uid, objects in studies.items():
        _check_patient(objects)
        content = KeyObjectSelection(document_title=title, referenced_objects=objects,
                                     observer_person_context=_observer(by or version), description=note)
        series_uid, _ = writeback_uids(fiche, version, "reject", study_uid)
        sop_uid = generate_uid(entropy_srcs=[version.sha256, "reject", title.value, study_uid, "instance"])
        number, series_description = _SERIES["reject"]
        document = KeyObjectSelectionDocument(evidence=objects, content=content, series_instance_uid=series_uid,
                                              series_number=number, sop_instance_uid=sop_uid,
                                              instance_number=version.number, manufacturer=MANUFACTURER)
        document.SeriesDescription = series_description
        _stamp(document, at, objects[0], fiche)
        notes.append(document)
    return notes


def key_image_notes(fiche: Fiche, version: SignedVersion, sources: Sequence[Dataset]) -> list[Dataset]:
    """One Key Object Selection document per study holding marked images.

    ``sources`` are the headers (pixel data not needed) of at least the marked instances; ``ValueError`` names the
    mark whose instance is missing, or a mark outside the case's studies.
    """
    if not fiche.key_images:
        return []
    by_sop = {str(s.SOPInstanceUID): s for s in sources}
    for i, mark in enumerate(fiche.key_images):
        if mark.sop_uid not in by_sop:
            raise ValueError(f"key image {i + 1}: no source dataset for SOP instance {mark.sop_uid}")
        if fiche.study_uids and mark.study_uid not in fiche.study_uids:
            raise ValueError(f"key image {i + 1}: study {mark.study_uid} is not one of the case's studies")
    _check_patient([by_sop[m.sop_uid] for m in fiche.key_images])
    studies: dict[str, list[KeyImage]] = {}
    for mark in fiche.key_images:
        studies.setdefault(str(by_sop[mark.sop_uid].StudyInstanceUID), []).append(mark)

    documents: list[Dataset] = []
    observer = _observer(version)
    for study_uid, marks in studies.items():
        evidence = [by_sop[m.sop_uid] for m in marks]
        content = KeyObjectSelection(
            document_title=FOR_TUMOR_BOARD,
            referenced_objects=evidence,
            observer_person_context=observer,
            description=_description(fiche, marks, version),
        )
        # A mark on one frame of a multi-frame instance references that frame (PS3.3 C.18.4 IMAGE item, Image
        # SOP Instance Reference Macro 10.4: Referenced Frame Number, required if not all frames apply).
        images = [item for item in content[0].ContentSequence if item.ValueType == "IMAGE"]
        for item, mark in zip(images, marks, strict=True):
            frames = int(by_sop[mark.sop_uid].get("NumberOfFrames", 1) or 1)
            if mark.frame is not None and frames > 1:
                if mark.frame > frames:
                    raise ValueError(f"key image on frame {mark.frame}: the instance has {frames} frames")
                item.ReferencedSOPSequence[0].ReferencedFrameNumber = mark.frame
        series_uid, sop_uid = writeback_uids(fiche, version, "kos", study_uid)
        number, series_description = _SERIES["kos"]
        document = KeyObjectSelectionDocument(
            evidence=evidence,
            content=content,
            series_instance_uid=series_uid,
            series_number=number,
            sop_instance_uid=sop_uid,
            instance_number=version.number,
            manufacturer=MANUFACTURER,
        )
        document.SeriesDescription = series_description
        _stamp(document, version.signed_at, evidence[0], fiche)
        documents.append(document)
    return documents


def _copy(target: Dataset, source: Dataset, keywords: Sequence[str]) -> None:
    for keyword in keywords:
        element = source.get(keyword)
        setattr(target, keyword, element if element is not None else "")


def encapsulated_fiche(pdf: bytes, fiche: Fiche, version: SignedVersion, source: Dataset) -> Dataset:
    """The signed fiche PDF as an Encapsulated PDF instance in ``source``'s study (PS3.3 A.45.1)."""
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("not a PDF document")
    study_uid = str(source.StudyInstanceUID)
    series_uid, sop_uid = writeback_uids(fiche, version, "pdf", study_uid)
    signed = _local(version.signed_at)

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: French names and titles (PS3.5 6.1.2.5.3)
    # SOP Common
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = signed.strftime("%Y%m%d")
    ds.InstanceCreationTime = signed.strftime("%H%M%S")
    # Patient (C.7.1.1) and General Study (C.7.2.1): exactly what the archive files the study under.
    _copy(ds, source, ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"))
    if "IssuerOfPatientID" in source:
        ds.IssuerOfPatientID = source.IssuerOfPatientID
    _add_ins(ds, fiche)
    ds.StudyInstanceUID = study_uid
    _copy(ds, source, ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"))
    # Encapsulated Document Series (C.24.1)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber, ds.SeriesDescription = _SERIES["pdf"]
    # General Equipment (C.7.5.1) and SC Equipment (C.8.6.1): made on a workstation.
    ds.Manufacturer = MANUFACTURER
    ds.ConversionType = "WSD"
    # Encapsulated Document (C.24.2)
    ds.InstanceNumber = version.number
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ds.AcquisitionDateTime = signed.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"
    ds.DocumentTitle = f"Fiche RCP - {fiche.board.name} - v{version.number}"[:64]
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = FRCP_CONCEPT
    ds.ConceptNameCodeSequence = [concept]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    # OB values have even length (PS3.5 7.1.1): pad with NUL, the true length is EncapsulatedDocumentLength.
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
