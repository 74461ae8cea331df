"""Writes one model's row into its own section of pipelines/models/ACCURACY.md.

A section is a '# ...' heading, an intro ending in a table header, and one row per model;
sections other than the one named are left as they are (the BasicMotions one included).
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCURACY = os.path.join(ROOT, "pipelines", "models", "ACCURACY.md")


def upsert_row(section, intro, row_prefix, row, path=ACCURACY):
    """Replace the row starting with row_prefix in `section` (adding the section, with `intro`,
    at the end of the file if it is missing)."""
    lines = open(path).read().rstrip("\n").split("\n") if os.path.exists(path) else []
    if section not in lines:
        lines += ["", section, ""] + intro.split("\n")
    start = lines.index(section)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# ")), len(lines))
    body = [l for l in lines[start:end] if not l.startswith(row_prefix)]
    last_table = max(i for i, l in enumerate(body) if l.startswith("|"))
    body.insert(last_table + 1, row)
    lines[start:end] = body
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
