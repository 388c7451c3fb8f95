from __future__ import annotations

import base64

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from rcp.epr.hl7 import AckCode, mdm_message, parse_ack
from tests.epr.samples import sample_document


def test_t02_validates_strictly_and_carries_the_document() -> None:
    document = sample_document(pdf_size=3000)
    text = mdm_message(document, control_id="0123456789ABCDEF0123")
    tree = hl7.parse(text)
    assert base64.b64decode(str(tree.extract_field("OBX", 1, 5, 1, 5))) == document.pdf
    # hl7apy's parser reads the varies OBX-5 as ST(199): check the rest strictly, with the data set aside.
    tree.assign_field("DATA", "OBX", 1, 5, 1, 5)
    parsed = parse_message(str(tree), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    parsed.validate()
    assert parsed.msh.msh_9.value == "MDM^T02^MDM_T02"
    assert parsed.msh.msh_10.value == "0123456789ABCDEF0123"
    assert parsed.evn.evn_1.value == "T02"
    ids = [r.value for r in parsed.pid.pid_3]
    assert ids == ["279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS",
                   "0012345^^^CHU-TEST&1.2.250.1.999.2&ISO^PI"]
    assert parsed.pid.pid_8.value == "F"
    assert parsed.txa.txa_2.value == "34794-8"
    assert parsed.txa.txa_12.value == f"{document.unique_id}^RCP"
    assert parsed.txa.txa_13.value == ""
    assert parsed.txa.txa_17.value == "LA"
    obx = parsed.mdm_t02_observation.obx
    assert obx.obx_2.value == "ED"
    assert obx.obx_11.value == "F"
    assert obx.obx_5.value == "^AP^PDF^Base64^DATA"


def test_t10_names_its_parent_and_large_pdfs_fit() -> None:
    first = sample_document()
    second = sample_document(version=2, set_root=first.set_id, pdf_size=300_000)
    text = mdm_message(second, control_id="K10")
    tree = hl7.parse(text)
    assert str(tree.segment("MSH")[9]) == "MDM^T10^MDM_T02"
    assert str(tree.extract_field("TXA", 1, 13, 1, 1)) == first.unique_id
    assert str(tree.extract_field("OBX", 1, 11)) == "C"
    assert base64.b64decode(str(tree.extract_field("OBX", 1, 5, 1, 5))) == second.pdf


def test_delimiters_in_names_are_escaped() -> None:
    text = mdm_message(sample_document(), control_id="K")
    tree = hl7.parse(text)
    assert str(tree.extract_field("TXA", 1, 9, 2, 2)) == "N'GUYEN"
    assert "thoracique & ORL" not in text  # the board is not in the message; free text would be escaped


@pytest.mark.parametrize(("code", "expected"), [("AA", AckCode.accept), ("CA", AckCode.accept),
                                                ("AE", AckCode.error), ("AR", AckCode.reject)])
def test_ack_codes(code: str, expected: AckCode) -> None:
    ack = f"MSH|^~\\&|DPI||RCP||20261123||ACK^T02^ACK|A1|P|2.5\rMSA|{code}|K1|why\r"
    assert parse_ack(ack, expected_control_id="K1") == parse_ack(ack, expected_control_id="K1")
    assert parse_ack(ack, expected_control_id="K1").code is expected


def test_ack_of_another_message_or_garbage_is_not_an_answer() -> None:
    ack = "MSH|^~\\&|DPI||RCP||20261123||ACK^T02^ACK|A1|P|2.5\rMSA|AA|OTHER\r"
    with pytest.raises(ValueError, match="MSA-2"):
        parse_ack(ack, expected_control_id="K1")
    with pytest.raises(ValueError):
        parse_ack("MSH|^~\\&|DPI\rPID|1\r", expected_control_id="K1")
    with pytest.raises(ValueError, match="0008"):
        parse_ack("MSH|^~\\&|DPI||RCP||20261123||ACK|A1|P|2.5\rMSA|XX|K1\r", expected_control_id="K1")


def test_control_id_length_is_checked() -> None:
    with pytest.raises(ValueError, match="MSH-10"):
        mdm_message(sample_document(), control_id="X" * 21)
