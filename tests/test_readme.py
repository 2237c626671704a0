"""The README promises things the code must keep true."""

from __future__ import annotations

import re
from pathlib import Path

from rag.settings import ENV_NAMES, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _bash_blocks() -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", README, flags=re.S | re.M)


def test_it_opens_with_the_quickstart_and_the_test_command() -> None:
    quickstart, tests = _bash_blocks()[:2]
    assert "pip install ." in quickstart and "rag ingest data/" in quickstart and "rag ask" in quickstart
    assert 'pip install -e ".[test]"' in tests and tests.strip().splitlines()[-1] == "pytest"


def test_every_setting_is_in_the_configuration_table_with_its_default() -> None:
    rows = {m[0]: m[1] for m in re.findall(r"^\| `([A-Z_]+)` \| `[a-z_.]+` \| ([^|]+) \|", README, flags=re.M)}
    assert set(rows) == set(ENV_NAMES.values())
    for row in Settings().describe():
        if row["name"] in ("store.home", "openai.api_key"):
            continue
        expected = "*unset*" if row["value"] is None else f"`{row['value']}`"
        assert rows[row["env"]].strip() == expected, row["env"]
