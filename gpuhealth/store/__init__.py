"""Stage 5, store: the results database and what it says about a card and a fleet.

`schema` (tables and migrations) is below `database` (the Store: add, import, history, fleet);
`card_history` and `fleet` are pure functions of stored rows; `export` writes text, CSV and HTML
summaries (through `csvsafe`).

May import: the shared top-level modules, judge, certificate and itself. Never measure or the
CLI. Within the package, schema imports nothing of database (no import cycle).
"""
