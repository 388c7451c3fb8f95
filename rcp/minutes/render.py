"""The fiche RCP and a meeting's minutes, as HTML (jinja2) and PDF (fpdf2), for people and for the archive.

The PDF is what a patient's GP reads and what goes into the imaging file (encapsulated PDF), so it is plain,
self-contained, in the reader's language (labels through gettext; coded values keep their official French CI-SIS
display) and carries on every page the version number, signer, time and the SHA-256 of the signed content: anyone
can check a printout against the stored version. Fonts are DejaVu Sans, embedded, so accents and ligatures (é, ç,
œ) survive any viewer.

Every PDF is built as **PDF/A-2b** (ISO 19005-2, level B), what the DMP and a CDA level 1 body expect of a document
kept for years: PDF 1.7 (≥ 1.4), every font embedded (fpdf2 subsets the TrueType fonts, PDF/A-2 6.2.11.4), XMP
metadata carrying the PDF/A identification (``pdfaid:part=2``, ``pdfaid:conformance=B``; 6.6.4) and matching the
document information dictionary (6.6.2.3), and an sRGB output intent (6.2.3) whose ICC profile is committed
with its provenance in ``color/``. fpdf2's ``enforce_compliance`` refuses what PDF/A forbids (transparency,
unembedded fonts, JavaScript) while the document is built. The conformance is built, not certified: no PDF/A
validator (veraPDF) runs here; the tests read the result back with pikepdf.

Rendering is CPU work: from async code call :func:`fiche_pdf_async` / :func:`minutes_pdf_async`, which run in a
worker thread (the locale context variable follows the call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any
from xml.sax.saxutils import escape

import fpdf
import jinja2
from fpdf import FPDF
from fpdf.enums import DocumentCompliance, MethodReturnValue, OutputIntentSubType, XPos, YPos
from fpdf.output import PDFICCProfile

from rcp import i18n
from rcp.clock import as_utc
from rcp.i18n import N_
from rcp.minutes.fiche import Fiche, Physician
from rcp.minutes.staging import LATERALITIES
from rcp.minutes.versions import SignedVersion
from rcp.scheduling.specialties import specialty as specialty_of

__all__ = [
    "PDFA",
    "DeferredItem",
    "MinutesItem",
    "fiche_html",
    "fiche_pdf",
    "fiche_pdf_async",
    "minutes_html",
    "minutes_pdf",
    "minutes_pdf_async",
    "sections",
    "staging_rows",
    "xmp_packet",
]

Translate = Callable[[str], str]


@dataclass(frozen=True)
class MinutesItem:
    """One case of a meeting's minutes: its fiche and the signed version, if any (else it shows as a draft)."""

    fiche: Fiche
    version: SignedVersion | None = None


@dataclass(frozen=True)
class DeferredItem:
    """A case of the meeting's agenda deferred to a later meeting (rcp.scheduling.agenda): listed, without a fiche,
    with the day of the meeting it went to (None when that case is gone)."""

    family_name: str
    given_names: str
    deferred_to: date | None = None


# -- shared wording ------------------------------------------------------------------------------------------------


def _specialty(key: str, _: Translate) -> str:
    try:
        return _(specialty_of(key).label)
    except ValueError:
        return key


def _person(p: Physician | None, _: Translate) -> str:
    if p is None:
        return ""
    parts = [p.name]
    if p.specialty:
        parts.append(_specialty(p.specialty, _))
    if p.hospital:
        parts.append(p.hospital)
    if p.rpps:
        parts.append(f"RPPS {p.rpps}")
    return ", ".join(parts)


def _yes_no(value: bool | None, _: Translate) -> str:
    """Yes, No, or nothing when nobody answered: a draft shows no value the board did not give (issue 15)."""
    return "" if value is None else (_("Yes") if value else _("No"))


def _day(value: date | None) -> str:
    return i18n.format_day(value, "long") if value else ""


def _moment(value: datetime) -> str:
    return i18n.format_moment(as_utc(value), "Europe/Paris", "d MMMM y, HH:mm")



PROPOSAL_LABELS = {
    "surgery": N_("Surgery"),
    "systemic_therapy": N_("Systemic therapy"),
    "radiotherapy": N_("Radiotherapy"),
    "combined": N_("Combined treatment"),
    "surveillance": N_("Surveillance"),
    "further_investigations": N_("Further investigations"),
    "palliative_care": N_("Palliative care"),
    "other": N_("Other"),
}


@dataclass(frozen=True)
class Section:
    title: str
    rows: tuple[tuple[str, str], ...]


def identity_status_label(status: str, _: Translate = i18n.gettext) -> str:
    """The RNIV identity status as shown to people (pages and the fiche)."""
    return {"provisional": _("Provisional identity"), "recovered": _("Recovered identity"),
            "validated": _("Validated identity"), "qualified": _("Qualified identity")}.get(status, status)


def identity_document_label(document: str, _: Translate = i18n.gettext) -> str:
    """The identity document a status was validated on (``rcp.identifiers.VALIDATION_MODES``), for people."""
    return {"passport": _("Passport"), "id_card": _("National identity card"), "residence_permit":
            _("Residence permit"), "birth_certificate": _("Birth certificate"),
            "family_record_book": _("Family record book")}.get(document, document)


def identity_attribute_label(attribute: str, _: Translate = i18n.gettext) -> str:
    return {"doubtful": _("Doubtful identity"), "fictitious": _("Fictitious identity"),
            "homonym": _("Homonym")}.get(attribute, attribute)


def staging_rows(fiche: Fiche, _: Translate = i18n.gettext) -> list[tuple[str, str, bool]]:
    """(label, text, flagged) of the diagnosis and staging, for the page and the PDF alike.

    TNM reads as written with its edition ("ypT0 N0 M0 (TNM 8th ed.)"); a classification without an edition says
    "TNM edition to confirm" and is ``flagged`` (the page highlights it; the fiche cannot be signed so).
    """
    rows: list[tuple[str, str, bool]] = []
    if fiche.diagnosis_date:
        when = fiche.diagnosis_date
        shown = _day(date.fromisoformat(when)) if len(when) == 10 else f"{when[5:7]}/{when[:4]}"
        rows.append((_("Date of diagnosis"), shown, False))
    if fiche.laterality:
        rows.append((_("Laterality"), _(LATERALITIES[fiche.laterality].label), False))
    for label, tnm in ((_("Clinical staging"), fiche.clinical_tnm), (_("Pathological staging"),
                                                                      fiche.pathological_tnm)):
        if tnm:
            rows.append((label, tnm.display(_), tnm.edition_to_confirm))
    for other in fiche.other_classifications:
        rows.append((_("Other classification"), other.label(), False))
    return rows


def sections(fiche: Fiche, _: Translate = i18n.gettext) -> list[Section]:
    """The fiche as titled sections of (label, text) rows: the one reading order of the PDF."""
    p = fiche.patient
    sex = {"female": _("Female"), "male": _("Male"), "other": _("Other")}.get(p.sex, _("Unknown"))
    patient_rows = [
        (_("Name"), f"{p.family_name.upper()} {p.given_names}".strip()),
        (_("Date of birth"), _day(p.birth_date)),
        (_("Sex"), sex),
    ]
    if p.used_name and p.used_name != p.family_name:
        patient_rows.append((_("Used name"), p.used_name.upper()))
    # The INS is printed only for a qualified identity (RNIV); otherwise the local identifier stands alone.
    if p.shared_ins:
        patient_rows.append((_("INS (national health identifier)"), p.shared_ins))
    if p.local_id:
        patient_rows.append((_("Local identifier"), f"{p.local_id} ({p.local_id_issuer})" if p.local_id_issuer
                             else p.local_id))
    status = identity_status_label(p.identity_status, _)
    if p.identity_document:  # RNIV: from which document, checked when
        checked = [identity_document_label(p.identity_document, _), _day(p.identity_date) if p.identity_date else ""]
        status += f" ({', '.join(c for c in checked if c)})"
    patient_rows.append((_("Identity status"), status))
    if p.identity_attributes:
        patient_rows.append((_("Identity attributes"),
                             ", ".join(identity_attribute_label(a, _) for a in p.identity_attributes)))
    board_rows = [
        (_("Board"), fiche.board.name),
        (_("Meeting date"), _day(fiche.meeting_date)),
        (_("Type of board"), " — ".join(c.display for c in (fiche.board.discussion_nature, fiche.board.system,
                                                              fiche.board.care) if c is not None)),
        (_("Referring physician"), _person(fiche.referring_physician, _)),
    ]
    tumour_rows = []
    if fiche.cancer_phase:
        tumour_rows.append((_("Phase"), fiche.cancer_phase.display))
    site = " — ".join(x for x in (f"{fiche.tumour_site.code} {fiche.tumour_site.display}" if fiche.tumour_site
                                  else "", fiche.tumour_site_text) if x)
    if site:
        tumour_rows.append((_("Tumour site"), site))
    histology = " — ".join(x for x in (f"{fiche.histology.code} {fiche.histology.display}" if fiche.histology
                                       else "", fiche.histology_text) if x)
    if histology:
        tumour_rows.append((_("Histology"), histology))
    tumour_rows.extend((label, text) for label, text, _flagged in staging_rows(fiche, _))
    if fiche.performance_status:
        ps = fiche.performance_status
        tumour_rows.append((_("Performance status"), f"{ps.scale} {ps.grade} — {ps.interpretation.display}"))
    result = [
        Section(_("Patient"), tuple(patient_rows)),
        Section(_("Meeting"), tuple(board_rows)),
        Section(_("Question asked"), ((_("Question"), fiche.question), (_("Clinical summary"),
                                                                        fiche.clinical_summary))),
    ]
    if tumour_rows:
        result.append(Section(_("Tumour"), tuple(tumour_rows)))
    imaging_rows = [(_("Studies reviewed"), "\n".join(fiche.study_uids) or _("None"))]
    for i, key in enumerate(fiche.key_images, 1):
        frame = f" ({_('frame')} {key.frame})" if key.frame else ""
        imaging_rows.append((f"{_('Key image')} {i}{frame}", key.description or key.sop_uid))
    result.append(Section(_("Imaging"), tuple(imaging_rows)))
    case_status = fiche.case_status_coding
    proposal_rows = [(_("Case status"), case_status.display if case_status else "")]
    if fiche.proposal:
        proposal_rows.append((_("Proposal"), _(PROPOSAL_LABELS[str(fiche.proposal.type)])))
        treatments = ", ".join(c.display for c in fiche.proposal.codings())
        if treatments:
            proposal_rows.append((_("Treatments"), treatments))
        if fiche.proposal.details:
            proposal_rows.append((_("Details"), fiche.proposal.details))
    g = fiche.guideline
    conform = _yes_no(g.conforms, _) + (f" — {g.reference}" if g.reference else "")
    proposal_rows.append((_("Follows the guideline"), conform))
    if g.conforms is False:
        proposal_rows.append((_("Why not"), g.reason))
    trial = _yes_no(fiche.clinical_trial.proposed, _)
    if fiche.clinical_trial.proposed:
        trial += f" — {fiche.clinical_trial.trial}"
    proposal_rows.append((_("Clinical trial proposed"), trial))
    if fiche.comments:
        proposal_rows.append((_("Comments"), fiche.comments))
    result.append(Section(_("Board's proposal"), tuple(proposal_rows)))
    quorum = fiche.quorum()
    attendee_rows = [(_("Quorum"), fiche.quorum_status.display)]
    for a in fiche.attendees:
        role = _("quorum member") if a.quorum_member else _("outside the quorum")
        if a.guest:
            role = _("guest, invited as %(specialty)s") % {"specialty": _specialty(a.specialty, _)} + ", " + role
        if a.present_from is not None and a.present_until is not None:
            role += ", " + _("%(start)s to %(end)s") % {
                "start": i18n.format_moment(a.present_from, "Europe/Paris", "time"),
                "end": i18n.format_moment(a.present_until, "Europe/Paris", "time")}
        attendee_rows.append((_specialty(a.specialty, _), f"{a.name} ({role})"))
    if quorum.missing:
        attendee_rows.append((_("Missing specialties"), ", ".join(_specialty(k, _) for k in quorum.missing)))
    result.append(Section(_("Attendees"), tuple(attendee_rows)))
    follow_rows = [
        (_("Responsible physician"), _person(fiche.responsible_physician, _)),
        (_("Patient informed, did not object"), _yes_no(fiche.patient_informed, _)),
        # DMP INVISIBLE_PATIENT (rcp.epr.xds): the GP reading this copy learns not to pass it on before.
        *([(_("Visible to the patient"), _("Not before the announcement consultation"))]
          if fiche.hidden_from_patient else []),
        (_("General practitioner"), _person(fiche.gp, _)),
    ]
    for c in fiche.correspondents:
        follow_rows.append((_("Correspondent"), _person(c, _)))
    result.append(Section(_("Follow-up"), tuple(follow_rows)))
    return result


def signature_line(version: SignedVersion | None, fiche: Fiche, _: Translate = i18n.gettext) -> str:
    if version is None:
        return _("DRAFT — not signed")
    # The account that signed (users table, by signed_by), never the typed responsible physician (issue 13).
    signer = version.signer.name if version.signer else f"#{version.signed_by}"
    line = _("Version {number}, signed by {signer} on {when}").format(
        number=version.number, signer=signer, when=_moment(version.signed_at))
    if version.replaces is not None:
        line += " — " + _("replaces version {number}: {reason}").format(number=version.replaces,
                                                                      reason=version.reason)
    return line


# -- HTML ----------------------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    from rcp.templating import templates  # the app's environment: gettext, filters, StrictUndefined

    return templates.env


def _html_context(_: Translate) -> dict[str, Any]:
    return {"signature_line": lambda v, f: signature_line(v, f, _), "proposal_labels": PROPOSAL_LABELS,
            "staging_rows": lambda f: staging_rows(f, _), "locale": i18n.current_locale.get()}


def fiche_html(fiche: Fiche, version: SignedVersion | None = None, *,
               env: jinja2.Environment | None = None) -> str:
    """The printable fiche of one case (a standalone HTML document)."""
    template = (env or _environment()).get_template("minutes/fiche.html")
    return template.render(fiche=fiche, version=version, **_html_context(i18n.gettext))


def minutes_html(title: str, meeting_date: date, items: Sequence[MinutesItem], *,
                 deferred: Sequence[DeferredItem] = (), env: jinja2.Environment | None = None) -> str:
    """The minutes of a whole meeting: every case with its fiche, signed or still draft, and the deferred ones."""
    template = (env or _environment()).get_template("minutes/meeting_minutes.html")
    return template.render(title=title, meeting_date=meeting_date, meeting_day=_day(meeting_date), items=items,
                           deferred=[(d, _deferred_line(d, i18n.gettext)) for d in deferred],
                           **_html_context(i18n.gettext))


def _deferred_line(item: DeferredItem, _: Translate) -> str:
    if item.deferred_to is None:
        return _("Deferred to a later meeting")
    return _("Deferred to the meeting of {date}").format(date=_day(item.deferred_to))


# -- PDF -----------------------------------------------------------------------------------------------------------

_FONT = "DejaVu"
#: ISO 19005-2 level B: the visual appearance is preserved (what a signed fiche needs), no tagged structure.
PDFA = DocumentCompliance.PDFA_2B
_PRODUCER = f"fpdf2 {fpdf.__version__}"


def _srgb_profile() -> bytes:
    """The ICC's sRGB2014 profile (``color/README.md`` says where it comes from and under which licence)."""
    return resources.files("rcp.minutes").joinpath("color", "sRGB2014.icc").read_bytes()


class _Document(FPDF):
    """A4 portrait, DejaVu Sans embedded, a footer with the signature line and the content hash."""

    def __init__(self, _: Translate) -> None:
        super().__init__(orientation="P", unit="mm", format="A4", enforce_compliance=PDFA)
        self._ = _
        # PDF/A-2 6.2.3: DeviceRGB text and fills need an output intent (GTS_PDFA1 is the PDF/A subtype of every
        # part) with the embedded profile; without ours, fpdf2 would add its own copy of the same profile.
        self.add_output_intent(
            OutputIntentSubType.PDFA, output_condition_identifier="sRGB", output_condition="IEC 61966-2-1:1999",
            registry_name="http://www.color.org", info="sRGB2014 (v2)",
            dest_output_profile=PDFICCProfile(contents=_srgb_profile(), n=3, alternate="DeviceRGB"))
        self.footer_lines: tuple[str, str] = ("", "")
        fonts = resources.files("rcp.minutes").joinpath("fonts")
        with resources.as_file(fonts.joinpath("DejaVuSans.ttf")) as regular, \
                resources.as_file(fonts.joinpath("DejaVuSans-Bold.ttf")) as bold:
            self.add_font(_FONT, "", str(regular))
            self.add_font(_FONT, "B", str(bold))
        self.set_auto_page_break(auto=True, margin=22)
        self.set_margins(18, 16, 18)

    def footer(self) -> None:
        self.set_y(-18)
        self.set_font(_FONT, "", 7)
        self.set_text_color(80, 80, 80)
        first, second = self.footer_lines
        self.multi_cell(0, 3.4, first, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        page = self._("Page {page} of {pages}").format(page=self.page_no(), pages="{nb}")
        self.multi_cell(0, 3.4, f"{second}   {page}" if second else page, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0, 0, 0)

    def heading(self, text: str, size: float = 15) -> None:
        self.set_font(_FONT, "B", size)
        self.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)

    def section(self, section: Section) -> None:
        if self.get_y() > self.h - 50:
            self.add_page()
        self.ln(2)
        self.set_font(_FONT, "B", 11)
        self.set_fill_color(230, 236, 242)
        self.cell(0, 6.5, section.title, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)
        label_w = 52
        for label, text in section.rows:
            self.set_font(_FONT, "B", 9)
            lines = self.multi_cell(label_w, 4.6, label, dry_run=True, output=MethodReturnValue.LINES)
            label_height = 4.6 * len(lines) if isinstance(lines, list) else 4.6
            if self.get_y() + label_height > self.page_break_trigger:
                self.add_page()
            y, page = self.get_y(), self.page_no()
            self.multi_cell(label_w, 4.6, label, new_x=XPos.RIGHT, new_y=YPos.TOP)
            self.set_xy(self.l_margin + label_w, y)
            self.set_font(_FONT, "", 9.5)
            self.multi_cell(0, 4.6, text or "—", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            label_bottom = y + label_height if self.page_no() == page else 0.0
            self.set_y(max(self.get_y(), label_bottom) + 0.8)

    def fiche(self, fiche: Fiche, version: SignedVersion | None) -> None:
        _ = self._
        self.heading(_("Multidisciplinary tumour board (RCP) — decision"))
        self.set_font(_FONT, "", 10)
        self.multi_cell(0, 5, f"{fiche.board.name} — {_day(fiche.meeting_date)}", new_x=XPos.LMARGIN,
                        new_y=YPos.NEXT)
        self.set_font(_FONT, "B", 9)
        self.multi_cell(0, 5, signature_line(version, fiche, _), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        for part in sections(fiche, _):
            self.section(part)
        if version is not None:
            self.ln(3)
            self.set_font(_FONT, "", 8)
            self.multi_cell(0, 4, f"SHA-256: {version.sha256}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _footer(fiche: Fiche, version: SignedVersion | None, _: Translate) -> tuple[str, str]:
    first = f"{fiche.patient.family_name.upper()} {fiche.patient.given_names} — " + signature_line(version, fiche, _)
    second = f"SHA-256 {version.sha256}" if version else _("DRAFT — not signed")
    return first, second


def xmp_packet(*, title: str, subject: str, keywords: str, creator: str, producer: str, when: datetime) -> str:
    """The XMP metadata of a PDF/A-2b document (ISO 19005-2 6.6): the PDF/A identification schema
    (``pdfaid:part`` 2, ``pdfaid:conformance`` B) and the Dublin Core / XMP / Adobe PDF properties that mirror the
    document information (title, subject, keywords, creator tool, producer, dates).

    Our own rather than fpdf2's: its packet stamps ``xmp:ModifyDate`` with the time of rendering, so a version
    would no longer always render to the same bytes (the write-back stores the very same document when retried).

    >>> from datetime import UTC
    >>> packet = xmp_packet(title="Décision & avis", subject="s", keywords="k", creator="RCP", producer="p",
    ...                     when=datetime(2026, 11, 23, 15, 30, tzinfo=UTC))
    >>> "<pdfaid:part>2</pdfaid:part>" in packet and "Décision &amp; avis" in packet
    True
    """
    moment = escape(as_utc(when).isoformat(timespec="seconds"))
    alt = '<rdf:Alt><rdf:li xml:lang="x-default">{}</rdf:li></rdf:Alt>'
    return "\n".join((
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
        '<rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">',
        f"<pdfaid:part>{PDFA.part}</pdfaid:part><pdfaid:conformance>{PDFA.conformance}</pdfaid:conformance>",
        "</rdf:Description>",
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">',
        "<dc:format>application/pdf</dc:format>",
        f"<dc:title>{alt.format(escape(title))}</dc:title>",
        f"<dc:description>{alt.format(escape(subject))}</dc:description>",
        "</rdf:Description>",
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">',
        f"<xmp:CreatorTool>{escape(creator)}</xmp:CreatorTool><xmp:CreateDate>{moment}</xmp:CreateDate>",
        f"<xmp:ModifyDate>{moment}</xmp:ModifyDate><xmp:MetadataDate>{moment}</xmp:MetadataDate>",
        "</rdf:Description>",
        '<rdf:Description rdf:about="" xmlns:pdf="http://ns.adobe.com/pdf/1.3/">',
        f"<pdf:Producer>{escape(producer)}</pdf:Producer><pdf:Keywords>{escape(keywords)}</pdf:Keywords>",
        "</rdf:Description>",
        "</rdf:RDF>",
        "</x:xmpmeta>",
    ))


def _finish(pdf: _Document, *, title: str, when: datetime | None, keywords: str) -> bytes:
    subject = "CR de réunion de concertation pluridisciplinaire (LOINC 34794-8)"
    pdf.set_title(title)
    pdf.set_subject(subject)
    pdf.set_creator("RCP")
    pdf.set_producer(_PRODUCER)
    pdf.set_keywords(keywords)
    if when is not None:
        # A given version always renders to the same bytes: a retried write-back stores the very same document.
        pdf.set_creation_date(as_utc(when))
    created = as_utc(when) if when is not None else as_utc(pdf.creation_date)
    pdf.set_xmp_metadata(xmp_packet(title=title, subject=subject, keywords=keywords, creator="RCP",
                                    producer=_PRODUCER, when=created))
    return bytes(pdf.output())


def fiche_pdf(fiche: Fiche, version: SignedVersion | None = None, *, translate: Translate | None = None) -> bytes:
    """The fiche of one case as a PDF document (bytes)."""
    _ = translate or i18n.gettext
    pdf = _Document(_)
    pdf.footer_lines = _footer(fiche, version, _)
    pdf.add_page()
    pdf.fiche(fiche, version)
    return _finish(pdf, title=_("RCP decision") + f" — {fiche.board.name}",
                   when=version.signed_at if version else None,
                   keywords=f"sha256:{version.sha256}" if version else "draft")


def minutes_pdf(title: str, meeting_date: date, items: Sequence[MinutesItem],
                deferred: Sequence[DeferredItem] = (), *, translate: Translate | None = None) -> bytes:
    """A meeting's minutes: a cover list of the cases, then each fiche on its own pages."""
    _ = translate or i18n.gettext
    pdf = _Document(_)
    pdf.footer_lines = (f"{title} — {_day(meeting_date)}", "")
    pdf.add_page()
    pdf.heading(_("Minutes of the meeting"))
    pdf.set_font(_FONT, "", 10)
    pdf.multi_cell(0, 5, f"{title} — {_day(meeting_date)}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    for i, item in enumerate(items, 1):
        f = item.fiche
        state = (_("signed, version {number}").format(number=item.version.number) if item.version
                 else _("not signed"))
        pdf.set_font(_FONT, "", 9.5)
        pdf.multi_cell(0, 5, f"{i}. {f.patient.family_name.upper()} {f.patient.given_names} — "
                             f"{f.case_status_coding.display if f.case_status_coding else ''} — {state}",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for d in deferred:
        pdf.set_font(_FONT, "", 9.5)
        pdf.multi_cell(0, 5, f"— {d.family_name.upper()} {d.given_names} — {_deferred_line(d, _)}",
                       new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for item in items:
        pdf.add_page()  # closes the previous page with its own footer, so set this case's footer after
        pdf.footer_lines = _footer(item.fiche, item.version, _)
        pdf.fiche(item.fiche, item.version)
    signed = [i.version.signed_at for i in items if i.version]
    return _finish(pdf, title=f"{_('Minutes of the meeting')} — {title}", when=max(signed) if signed else None,
                   keywords="minutes")


async def fiche_pdf_async(fiche: Fiche, version: SignedVersion | None = None) -> bytes:
    return await asyncio.to_thread(fiche_pdf, fiche, version)


async def minutes_pdf_async(title: str, meeting_date: date, items: Sequence[MinutesItem],
                            deferred: Sequence[DeferredItem] = ()) -> bytes:
    return await asyncio.to_thread(minutes_pdf, title, meeting_date, items, deferred)
