"""The one sentence that states a quorum, wherever it is shown (issue 15, item 7).

The meeting page counts the quorum the invitations promise (who accepted: ``rcp.scheduling.service``); the room
counts who is present for the case now (``rcp.minutes.routes``, from the room's attendance). Both are the INCa rule
of :mod:`rcp.scheduling.quorum` over different people, so a coordinator could read "Quorum met" before the meeting
and "not met" in the room with no explanation. Both now say which count they are and what is missing, in the same
words:

    Expected quorum (from invitations): not met — missing: surgeon, 1 more specialty needed
    Quorum present now: met

The template filter/global ``quorum_statement`` (``rcp.templating``) and the room's decision state call this
function; nothing else words a quorum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from rcp.i18n import N_, gettext, ngettext
from rcp.scheduling.specialties import specialty

__all__ = ["Basis", "QuorumFacts", "quorum_statement"]

#: Which people a quorum was counted over: the accepted invitations, or who is in the room for the case.
Basis = Literal["expected", "present"]

_BASIS: dict[str, str] = {
    "expected": N_("Expected quorum (from invitations)"),
    "present": N_("Quorum present now"),
}


class QuorumFacts(Protocol):
    """What a statement needs: :class:`rcp.scheduling.quorum.Quorum` or its API form (``QuorumOut``)."""

    @property
    def met(self) -> bool: ...

    @property
    def missing(self) -> Sequence[str]: ...

    @property
    def short_by(self) -> int: ...


def _label(key: str) -> str:
    try:
        return gettext(specialty(key).label).lower()
    except ValueError:
        return key


def quorum_statement(quorum: QuorumFacts, *, basis: Basis) -> str:
    """The quorum in one sentence, in the reader's language (the request's locale).

    >>> from rcp.scheduling.quorum import Attendee, evaluate_quorum
    >>> from rcp.i18n import use_locale
    >>> use_locale("en")
    >>> quorum_statement(evaluate_quorum([Attendee(1, "surgeon")], ["surgeon", "pathologist"]), basis="present")
    'Quorum present now: not met — missing: pathologist, 1 more specialty needed'
    >>> use_locale("fr")
    """
    head = gettext(_BASIS[basis])
    if quorum.met:
        return gettext("%(quorum)s: met") % {"quorum": head}
    gaps = [_label(key) for key in quorum.missing]
    if quorum.short_by:
        gaps.append(ngettext("%(num)d more specialty needed", "%(num)d more specialties needed", quorum.short_by)
                    % {"num": quorum.short_by})
    if not gaps:
        return gettext("%(quorum)s: not met") % {"quorum": head}
    return gettext("%(quorum)s: not met — missing: %(missing)s") % {"quorum": head, "missing": ", ".join(gaps)}
