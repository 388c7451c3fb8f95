"""The names other packages import from the minutes (room, EPR, imaging, app) stay available."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "rcp.minutes.codes": {"Coding", "ValueSet", "value_set", "quorum_status", "case_status", "performance_status",
                          "ProposalType", "proposal_coding"},
    "rcp.minutes.fiche": {"Fiche", "PatientIdentity", "KeyImage", "Proposal", "AttendeeRecord", "DRAFT_FIELDS",
                          "parse_draft_field"},
    "rcp.minutes.versions": {"Draft", "DraftField", "SignedVersion", "sign", "amend", "canonical_json",
                             "content_sha256", "FieldConflict", "QuorumNotMet", "AlreadySigned", "StaleDraft"},
    "rcp.minutes.store": {"StoredVersion", "on_signed", "on_field_saved", "load_draft", "save_field", "sign",
                          "amend", "list_versions", "meeting_versions", "due_writebacks", "complete_writeback",
                          "fail_writeback", "build_fiche", "load_context", "reject_in_imaging"},
    "rcp.minutes.render": {"fiche_html", "fiche_pdf", "fiche_pdf_async", "minutes_html", "minutes_pdf",
                           "minutes_pdf_async", "MinutesItem"},
    "rcp.minutes.dicom": {"key_image_notes", "encapsulated_fiche", "FOR_TUMOR_BOARD", "writeback_uids",
                          "rejection_notes", "REJECTED_FOR_QUALITY", "REJECTED_FOR_PATIENT_SAFETY"},
    "rcp.minutes.writeback": {"run_due_writebacks", "build_objects", "to_part10", "WritebackWorker"},
    "rcp.minutes.models": {"DecisionDraft", "DecisionVersion", "WritebackJob"},
    "rcp.minutes.routes": {"routes"},
    "rcp.minutes.delivery": {"epr_on_signed", "epr_on_withdrawn", "to_signed_document", "document_ids"},
    # The withdrawal's hook: the imaging side subscribes to it (rejection notes, IHE IOCM).
    "rcp.minutes.withdrawals": {"on_withdrawn", "withdraw", "list_withdrawals", "StoredWithdrawal", "WithdrawnHook"},
    "rcp.minutes.oids": {"document_ids", "withdrawal_id"},
    "rcp.minutes.cda": {"fiche_cda", "Custodian", "MEDIA_TYPE", "LOINC_FRCP"},
    "rcp.minutes.cda_reader": {"read_fiche_cda", "ReadDocument"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    imported = importlib.import_module(module)
    exported = set(getattr(imported, "__all__", ()))
    assert PUBLIC[module] <= exported, PUBLIC[module] - exported
    for name in exported:
        assert hasattr(imported, name), name
