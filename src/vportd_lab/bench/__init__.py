"""The benchmarks: core, southbound, cluster and migration downtime, each measured, never asserted.

Each suite writes its section of a Markdown file (`doc.write_markdown`) and
its raw results next to it; `vportctl bench` runs them (`vportd_lab.cli.bench`).
"""
