"""Each published result folder (``docs/results/<name>/``) lists every file it holds in its MANIFEST.csv, and keeps
each kind of file in its own subfolder with one archive extension."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
COLUMNS = ["file", "kind", "backend", "load", "date", "superseded", "what"]
FOLDER_OF_KIND = {"point": "points", "bundle": "bundles", "diagnostic": "diagnostics", "table": "tables", "figure": "figs",
                  "summary": ".", "readme": "."}
ARCHIVES = (".tar.gz", ".tar.xz")  # one of them a folder


def _folders() -> list[Path]:
    return sorted(p for p in RESULTS.iterdir() if p.is_dir())


def test_there_are_results() -> None:
    assert _folders(), f"no result folder under {RESULTS}"


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: p.name)
def test_manifest_lists_exactly_the_folder(folder: Path) -> None:
    with open(folder / "MANIFEST.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    listed = [r["file"] for r in rows]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "MANIFEST.csv")
    assert sorted(listed) == present, (
        f"only in MANIFEST.csv: {sorted(set(listed) - set(present))}; only in the folder: {sorted(set(present) - set(listed))}"
    )
    for r in rows:
        where = f"{folder.name}/MANIFEST.csv, {r['file']}"
        assert r["kind"] in FOLDER_OF_KIND, where
        assert str(Path(r["file"]).parent) == FOLDER_OF_KIND[r["kind"]], f"{where}: a {r['kind']} belongs in {FOLDER_OF_KIND[r['kind']]}/"
        assert r["superseded"] in ("yes", "no"), where
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["date"]), where
        assert r["what"].strip(), f"{where}: say what it holds"


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: p.name)
def test_one_archive_extension(folder: Path) -> None:
    archives = [p for p in folder.rglob("*") if p.is_file() and re.search(r"\.(tgz|tar|gz|zip|bz2|xz)$", p.name)]
    kinds = {next((a for a in ARCHIVES if p.name.endswith(a)), p.suffix) for p in archives}
    assert len(kinds) <= 1 and kinds <= set(ARCHIVES), [str(p.relative_to(folder)) for p in archives]
