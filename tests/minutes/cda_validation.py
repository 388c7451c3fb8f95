"""The CDA schema and the ANS CI-SIS schematrons, run as the ANS kit's validate.py runs them (lxml + saxonche).

Material in ``tests/fixtures/ans-cda`` (see its PROVENANCE.md). The stylesheets are compiled once per process:
the IHE profile alone is 1.2 MB of XSLT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree
from saxonche import PySaxonProcessor

KIT = Path(__file__).resolve().parent.parent / "fixtures" / "ans-cda"
XSD = KIT / "infrastructure" / "cda" / "CDA_extended.xsd"
PROFILES = {
    "frcp": KIT / "schematrons" / "CI-SIS_CANCER-FRCP_2022.01.xsl",
    "ihe": KIT / "schematrons" / "profils" / "IHE.xsl",
    "modeles": KIT / "schematrons" / "profils" / "CI-SIS_ModelesDeContenusCDA.xsl",
    "ans": KIT / "schematrons" / "profils" / "CI-SIS_Modeles_ANS.xsl",
}
EXAMPLES = KIT / "examples"
_SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}


@dataclass(frozen=True)
class Failure:
    profile: str
    role: str
    text: str
    location: str

    def __str__(self) -> str:
        return f"{self.profile} {self.role}: {self.text[:300]} @ {self.location}"


@functools.cache
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD)))


def schema_errors(document: bytes) -> list[str]:
    """Every CDA schema error of ``document`` ("line N: message")."""
    schema = _schema()
    if schema.validate(etree.fromstring(document)):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]


@functools.cache
def _processor() -> Any:
    return PySaxonProcessor(license=False)


@functools.cache
def _executable(profile: str) -> Any:
    return _processor().new_xslt30_processor().compile_stylesheet(stylesheet_file=str(PROFILES[profile]))


def schematron_failures(document: bytes, profile: str, tmp: Path) -> list[Failure]:
    """The failed assertions of one profile that are errors (warnings and infos left out)."""
    source = tmp / "document.xml"
    source.write_bytes(document)
    svrl = _executable(profile).transform_to_string(source_file=str(source))
    report = etree.fromstring(svrl.encode())
    out = []
    for f in report.findall(".//svrl:failed-assert", _SVRL):
        role = f.get("role", "error")
        if role in {"warning", "warn", "info"}:
            continue
        out.append(Failure(profile, role, " ".join("".join(f.itertext()).split()), f.get("location", "")))
    return out
