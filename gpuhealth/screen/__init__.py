"""Screen a card from its `nvidia-smi -q` report (text or `-q -x` XML), with no GPU and no test.

tree.py         the report as a tree of named values, each with its line (shared by both formats)
text_parser.py  `nvidia-smi -q` text (drivers 470 on) into trees, one per GPU
xml_parser.py   `nvidia-smi -q -x` XML into the same trees (stdlib expat, entities refused)
fields.py       the health and identity fields, by their path in each driver's layout
judge.py        fields into gpuhealth's own findings, graded by the grade's policy (never A)
summary.py      JSON, Markdown and HTML summaries of many screened GPUs
"""
