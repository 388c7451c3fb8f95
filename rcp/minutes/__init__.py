"""Minutes: the structured decision of each case (fiche RCP), its signature and versions, and where it goes.

- ``codes``: the CI-SIS FRCP value sets (IHE SVS files shipped in ``valuesets/``) as typed codings;
- ``fiche``: the decision's fields, checked and coded; its canonical JSON content;
- ``versions``: drafts with per-field versions, signed versions (canonical JSON + SHA-256), corrections;
- ``models`` / ``store``: the tables and the async store (drafts, signature in one transaction, write-back jobs);
- ``render``: the fiche and the meeting's minutes as HTML and PDF (PDF/A-2b);
- ``dicom`` / ``writeback``: the Key Object Selection and Encapsulated PDF written back to the imaging file, in
  the case's "RCP" series, and the IHE IOCM rejection note hiding them once the version is replaced or withdrawn;
- ``cda`` / ``cda_reader``: the signed fiche as a CI-SIS CANCER-FRCP CDA R2 document, and such a document read
  back into the model;
- ``routes``: the HTTP edges.
"""
