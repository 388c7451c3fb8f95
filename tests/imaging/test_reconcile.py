"""Coercing a file of another identity domain to the case's patient (rcp/imaging/reconcile.py), read back with
pydicom: what is replaced, what is kept in Original Attributes Sequence (PS3.3 C.12.1.1.9), and the confirmation."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from rcp.identifiers import DicomPatient, Identifier, ServicePatient, match
from rcp.imaging.reconcile import ReconcileRefused, coerced_bytes, confirmation, same_reconciled
from rcp.imaging.synthetic import SyntheticPatient, ct_series

OURS = ServicePatient(identifiers=(Identifier("IPP", "100001", "CHU de Lyon"), Identifier("INS-NIR", "255081416802538")),
                      family_name="Lefèvre", given_names="Hélène Marie", birth_date=date(1958, 3, 28), sex="female")
AT = datetime(2026, 12, 3, 18, 30, tzinfo=UTC)


def _foreign_file() -> bytes:
    """A Latin-1, implicit VR file from another hospital: its IPP, another INS item, an earlier coercion."""
    [ds] = ct_series(SyntheticPatient("BRG-1", "CH de Bourg", "LEFEVRE", "HELENE", date(1958, 3, 28), "F"),
                     slices=1, rows=16, columns=16)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "LEFÈVRE^HÉLÈNE"
    other = Dataset()
    other.PatientID = "BRG-OLD-7"
    other.IssuerOfPatientID = "CH de Bourg (ancien)"
    ds.OtherPatientIDsSequence = [other]
    earlier = Dataset()
    earlier.ModifiedAttributesSequence = [Dataset()]
    earlier.ModifyingSystem = "PACS BOURG"
    earlier.ReasonForTheAttributeModification = "CORRECT"
    earlier.AttributeModificationDateTime = "20200101120000"
    ds.OriginalAttributesSequence = [earlier]
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def test_the_coerced_file_is_the_case_patients_and_keeps_the_files_identity() -> None:
    source = _foreign_file()
    before = pydicom.dcmread(io.BytesIO(source))
    blob = coerced_bytes(source, OURS, at=AT)
    ds = pydicom.dcmread(io.BytesIO(blob))
    assert match(OURS, DicomPatient.from_dataset(ds)).by == "IPP"
    assert (str(ds.PatientName), ds.PatientID, ds.IssuerOfPatientID) == ("Lefèvre^Hélène Marie", "100001",
                                                                         "CHU de Lyon")
    assert (ds.PatientBirthDate, ds.PatientSex, ds.SpecificCharacterSet) == ("19580328", "F", "ISO_IR 192")
    # No INS unless the caller passes it (the route does for a qualified identity only): the foreign ids go.
    assert "OtherPatientIDsSequence" not in ds and "255081416802538" not in blob.decode("latin-1")
    # UIDs and pixels untouched.
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PixelData"):
        assert ds[keyword].value == before[keyword].value
    earlier, ours = ds.OriginalAttributesSequence
    assert earlier.ModifyingSystem == "PACS BOURG" and earlier.ReasonForTheAttributeModification == "CORRECT"
    assert (ours.ModifyingSystem, ours.ReasonForTheAttributeModification) == ("RCP", "COERCE")
    assert ours.AttributeModificationDateTime == "20261203183000+0000"
    assert ours.SourceOfPreviousValues == "CH de Bourg"
    [previous] = ours.ModifiedAttributesSequence
    assert str(previous.PatientName) == "LEFÈVRE^HÉLÈNE"  # decoded from Latin-1, kept intact in UTF-8
    assert (previous.PatientID, previous.IssuerOfPatientID) == ("BRG-1", "CH de Bourg")
    assert previous.OtherPatientIDsSequence[0].PatientID == "BRG-OLD-7"
    assert ds.file_meta.TransferSyntaxUID != ImplicitVRLittleEndian


def test_the_same_file_reconciled_twice_is_the_same_instance() -> None:
    source = _foreign_file()
    first = coerced_bytes(source, OURS, at=AT)
    later = coerced_bytes(source, OURS, at=datetime(2027, 1, 2, tzinfo=UTC))
    assert first != later and same_reconciled(first, later)
    other = ServicePatient(identifiers=OURS.identifiers, family_name="Autre", given_names="Léa",
                           birth_date=date(1980, 1, 1), sex="female")
    assert not same_reconciled(first, coerced_bytes(source, other, at=AT))


def test_a_patient_without_an_ipp_and_its_hospital_cannot_receive_files() -> None:
    bare = ServicePatient(identifiers=(Identifier("IPP", "100001", ""),), family_name="Lefèvre")
    with pytest.raises(ReconcileRefused):
        coerced_bytes(_foreign_file(), bare, at=AT)


def test_the_confirmation_binds_the_case_and_both_identities_and_says_nothing() -> None:
    theirs = DicomPatient("BRG-1", "CH de Bourg", name="LEFEVRE^HELENE", birth_date="19580328", sex="F")
    shown = confirmation("secret-key", 7, OURS, theirs)
    assert re.fullmatch(r"[0-9a-f]{32}", shown)
    assert shown != confirmation("secret-key", 8, OURS, theirs)
    assert shown != confirmation("other-secret", 7, OURS, theirs)
    assert shown != confirmation("secret-key", 7, OURS, DicomPatient("BRG-2", "CH de Bourg", name="X^Y"))
    edited = ServicePatient(identifiers=OURS.identifiers, family_name="Lefèvre", given_names="Hélène",
                            birth_date=date(1958, 3, 29), sex="female")
    assert shown != confirmation("secret-key", 7, edited, theirs)
