"""Stage 4, certify: the signed report a buyer reads and checks.

`report`, `charts` and `pdf` render a judged record; `keys` and `signing` sign it; `verify`,
with `rejudge`, `pagecheck` and `checks`, proves a signed report to a buyer (signer, integrity,
the grade judged again under the shipped rules). `recheck_result` is the form in which a re-check
on the card (measure/recheck.py) reaches verify.

May import: the shared top-level modules, judge and itself. Never measure (no backend: verify
runs on a machine with no GPU; the CLI hands it a re-check's result), store or the CLI.
"""
