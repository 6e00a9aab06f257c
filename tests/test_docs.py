"""The README's configuration reference stays true to the declarations in Pulumi.yaml."""

import re
from pathlib import Path

from infra.settings import PROJECT_ROOT, load_project

README = (PROJECT_ROOT / "README.md").read_text()


def _readme_config_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for match in re.finditer(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", README, re.MULTILINE):
        rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return rows


def test_readme_documents_every_config_key_with_its_type_and_default() -> None:
    rows = _readme_config_rows()
    for key, declaration in load_project()["config"].items():
        assert key in rows, f"README configuration table misses {key}"
        documented_type, documented_default = rows[key]
        assert declaration["type"] in documented_type, key
        if "default" in declaration:
            default = declaration["default"]
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            expected = f"`{shown}`" if shown else "empty"
            assert documented_default == expected, key
        else:
            assert documented_default == "(required)", key


def test_readme_commands_exist_in_the_makefile() -> None:
    makefile = Path(PROJECT_ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, re.MULTILINE):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
