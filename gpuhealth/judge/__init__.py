"""Stage 3, judge: what a run record says about the card, as findings and a grade.

Pure functions of a record, a reference profile and a policy: `evidence` (did the tests run as
the record claims?), `analysis` (each metric against the healthy-card `profiles/`, with `stats`,
`composite`, `efficiency`, `soak`, `thermal_fit`), `findings` (what is wrong with the card) and
`grading` (the policy's rules applied to the findings: the letter and its reasons). `shipped`
holds the rules each gpuhealth version shipped, so a grade can be judged again later.

May import: the shared top-level modules and itself. Never measure (no backend, no cupy or
pynvml), certificate, store or the CLI: a record is judged the same on a machine with no GPU.
"""
