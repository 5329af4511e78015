"""Pure renderers of run records: text tables, HTML, charts, notebook cells. No engine state."""
