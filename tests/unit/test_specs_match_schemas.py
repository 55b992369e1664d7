"""Every registered table schema appears in its ``specs/<spec_file>`` exactly as markdown_table renders it.

Stages register their schemas in :mod:`gpu_simulate_test.io.schemas` (some from their own modules):
list such modules in STAGE_MODULES so that their tables are registered before the check runs.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from gpu_simulate_test.io import schemas

SPECS = Path(__file__).resolve().parents[2] / "specs"
STAGE_MODULES: tuple[str, ...] = (
    "gpu_simulate_test.io.schemas",
    "gpu_simulate_test.io.runs",
    "gpu_simulate_test.workloads.spec",
)

for _module in STAGE_MODULES:
    importlib.import_module(_module)


@pytest.mark.parametrize("name", sorted(schemas.TABLES))
def test_spec_contains_the_rendered_table(name: str) -> None:
    schema = schemas.TABLES[name]
    spec = SPECS / schema.spec_file
    assert spec.is_file(), f"{spec} is missing: document {schema.filename} there"
    table = schemas.markdown_table(schema)
    assert table in spec.read_text(), (
        f"{spec} does not contain the table of {schema.filename} as io/schemas.py defines it; paste:\n{table}"
    )
    assert schema.filename in spec.read_text()
