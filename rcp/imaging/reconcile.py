"""Import reconciliation: a file of this patient from another identity domain, filed under the case's patient.

A CD from another hospital names the patient by *that* hospital's IPP and issuer, and often spells the name its
own way. The identity rule (``rcp.identifiers.match``) refuses such a file: it shares no identifier with the case's
patient, and traits alone never match a file that carries another domain's identifier. IHE Import Reconciliation
Workflow (IRWF, RAD TF-1 §21; transaction RAD-61 "Imported Objects Stored", RAD TF-3 4.61: the Importer puts the
reconciled local demographics in the headers of what it stores) is the way to bring it in, and here it is only ever
an explicit choice:

- The refused import shows the uploader (a coordinator: only they import) both identities side by side and a
  ``confirmation``: an HMAC, under the service's secret, of the case, the case's patient and the file's patient as
  shown. Importing again with ``reconcile=true&confirm=<it>`` reconciles exactly that pair: a stale page, another
  file or a patient edited since gives another value, and the import is refused as before. The confirmation
  carries no patient data (it can sit in a query string) and cannot be forged without the secret.
- Only a file that shares *no* identifier with the case's patient is reconciled (another domain). A file under the
  case's own IPP and issuer whose traits contradict is a filing error at the source, not another domain: it stays
  refused, and the PACS or the sender corrects it.
- One foreign identity per import: a CD holding two patients is reconciled one patient at a time.
- Choosing to reconcile is the board's coordinators' and admins' (``access.Action.reconcile_import``) and is
  audited with the file's identity kept in the objects themselves.

What is coerced (PS3.3 C.7.1.1 Patient Module): PatientName, PatientID, IssuerOfPatientID (its qualifiers and the
Other Patient IDs Sequence of the other domain are removed), PatientBirthDate and PatientSex, to the case's
patient. The INS is written only when the caller passes it, which the route does for a *qualified* identity only
(``rcp.identifiers.ins_may_leave``: the national rules share the INS for qualified identities alone), as
``rcp.minutes.dicom`` writes it: an Other Patient IDs item qualified by the INS OID. The values replaced or removed are kept in an
item appended to the Original Attributes Sequence (PS3.3 C.12.1.1.9: Modified Attributes Sequence,
AttributeModificationDateTime, ModifyingSystem, SourceOfPreviousValues, ReasonForTheAttributeModification
``COERCE``). The data set is decoded and rewritten in UTF-8 (``ISO_IR 192``), so the case patient's accents and
the file's original characters both survive; the character set is an encoding, not a value, and is not recorded.

**UIDs are kept.** RAD-61 (RAD TF-3 4.61.4.1.1.1, "UIDs") has the Importer use a valid set of DICOM UIDs
unchanged — they are universally unique — and regenerate them only when they are incorrect or inconsistent, then
keeping referential integrity. Keeping them means that the other hospital's reports, KOS and prior references keep
resolving and the same CD imported twice is recognised. A collision is not re-identified here: a study already held
under another patient, or a stored instance with other content, refuses the import (``rcp.imaging.imports``), and
the coordinator sees why. New UIDs would silently duplicate images already in the archive.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from datetime import datetime

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from rcp.identifiers import INS_NIR_OID, INS_OIDS, DicomPatient, ServicePatient, ins_system, match

__all__ = ["COERCED", "MODIFYING_SYSTEM", "ReconcileRefused", "coerce", "coerced_bytes", "confirmation",
           "same_reconciled"]

#: The Patient Module attributes a reconciliation replaces (or removes) and keeps in Original Attributes Sequence.
COERCED = ("PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
           "OtherPatientIDsSequence", "PatientBirthDate", "PatientSex")
#: Modifying System (0400,0563): who coerced the values.
MODIFYING_SYSTEM = "RCP"


class ReconcileRefused(ValueError):
    """The coerced object failed its own check (it would not be filed under the case's patient)."""


def confirmation(secret: str, case_id: int, case_patient: ServicePatient, file_patient: DicomPatient) -> str:
    """What the uploader sends back to reconcile exactly this file's patient into this case's patient."""
    shown = json.dumps([case_id, case_patient.as_json(), file_patient.as_json()], sort_keys=True,
                       ensure_ascii=False)
    digest = hmac.new(secret.encode(), b"rcp.reconcile\x00" + shown.encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def confirmed(secret: str, case_id: int, case_patient: ServicePatient, file_patient: DicomPatient,
              given: str) -> bool:
    return hmac.compare_digest(confirmation(secret, case_id, case_patient, file_patient), given)


def _dicom_name(patient: ServicePatient) -> str:
    """PN ``FAMILY^GIVEN`` (PS3.5 6.2), the given names as the record holds them."""
    return f"{patient.family_name.strip()}^{patient.given_names.strip()}".rstrip("^")


def _dt(at: datetime) -> str:
    """DT with its UTC offset (PS3.5 6.2)."""
    return at.strftime("%Y%m%d%H%M%S") + (at.strftime("%z") or "+0000")


def _ins_item(ins: str, oid: str) -> Dataset:
    qualifier = Dataset()
    qualifier.UniversalEntityID = oid if oid in INS_OIDS else INS_NIR_OID
    qualifier.UniversalEntityIDType = "ISO"
    item = Dataset()
    item.PatientID = ins
    item.IssuerOfPatientID = ins_system(qualifier.UniversalEntityID)
    item.IssuerOfPatientIDQualifiersSequence = [qualifier]
    item.TypeOfPatientID = "TEXT"
    return item


def coerce(ds: Dataset, patient: ServicePatient, *, at: datetime, ins: str = "", ins_oid: str = INS_NIR_OID
           ) -> Dataset:
    """``ds`` with its Patient Module set to ``patient`` and the previous values in Original Attributes Sequence.

    Changes ``ds`` in place and returns it. ``patient`` must have an IPP with its assigning authority (the only
    identifier written besides ``ins``, which the caller passes for a qualified identity only).
    """
    ipp = next((i for i in patient.identifiers if i.system == "IPP" and i.value and i.assigner), None)
    if ipp is None:
        raise ReconcileRefused("The case's patient has no IPP with its hospital: files of another hospital cannot "
                               "be filed under them. Add the patient's IPP and its hospital first.")
    ds.decode()  # every text value to str under the file's own character set, before it becomes UTF-8
    previous = Dataset()
    for keyword in COERCED:
        if keyword in ds:
            previous.add(ds[keyword])
    item = Dataset()
    item.ModifiedAttributesSequence = [previous]
    item.AttributeModificationDateTime = _dt(at)
    item.ModifyingSystem = MODIFYING_SYSTEM
    item.SourceOfPreviousValues = str(ds.get("IssuerOfPatientID", "") or "")[:64]
    item.ReasonForTheAttributeModification = "COERCE"
    history = list(ds.get("OriginalAttributesSequence") or [])
    for keyword in COERCED:
        if keyword in ds:
            del ds[keyword]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = _dicom_name(patient)
    ds.PatientID = ipp.value
    ds.IssuerOfPatientID = ipp.assigner
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    ds.PatientSex = patient.dicom_sex or ("O" if patient.sex == "other" else "")
    if ins:
        ds.OtherPatientIDsSequence = [_ins_item(ins, ins_oid)]
    ds.OriginalAttributesSequence = [*history, item]
    return ds


def _without_modification_times(blob: bytes) -> Dataset:
    ds = pydicom.dcmread(io.BytesIO(blob))
    for item in ds.get("OriginalAttributesSequence") or []:
        if "AttributeModificationDateTime" in item:
            del item.AttributeModificationDateTime
    return ds


def same_reconciled(stored: bytes, incoming: bytes) -> bool:
    """Whether ``incoming`` (a file just reconciled) is the instance already ``stored`` by an earlier reconciliation of
    the same file: equal but for when each was coerced. The same CD imported twice is then a no-op, not a refused
    replacement."""
    try:
        return _without_modification_times(stored) == _without_modification_times(incoming)
    except (ValueError, TypeError, KeyError, AttributeError, EOFError, OSError):
        return False


def coerced_bytes(source: bytes | str, patient: ServicePatient, *, at: datetime, ins: str = "",
                  ins_oid: str = INS_NIR_OID) -> bytes:
    """The file ``source`` (bytes or a path), reconciled to ``patient``, as a Part 10 file; checked by reading it
    back (pydicom round trip): the identity rule must now say it is ``patient``'s, by the IPP."""
    ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
    coerce(ds, patient, at=at, ins=ins, ins_oid=ins_oid)
    if ds.file_meta.get("TransferSyntaxUID") in {"1.2.840.10008.1.2"}:
        # Implicit VR cannot carry the new sequence's VRs unambiguously for every reader: write explicit VR.
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    blob = out.getvalue()
    again = pydicom.dcmread(io.BytesIO(blob))
    verdict = match(patient, DicomPatient.from_dataset(again))
    if verdict.by != "IPP" or not verdict or "OriginalAttributesSequence" not in again:
        raise ReconcileRefused("The reconciled file did not read back as the case's patient's; nothing was stored.")
    return blob
