"""The analysis of results trees: the λ stage's percent changes, trade-off selection and
report.html (report), the evidence preset's page (evidence), and the importer of the original
code's published runs (import_original)."""
