#!/usr/bin/env python3
"""Write docs/variables.md: every role's variables, from its meta/argument_specs.yml and defaults/main.yml.

`python scripts/role-variables.py` regenerates it; tests/test_role_docs.py fails when it is stale, and when a
default is missing from the argument spec or the other way round.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "variables.md"


def default_text(value: object) -> str:
    if value is None:
        return "*(required, no default)*"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    if len(text) > 60:
        text = text[:57] + "..."
    return "`" + text.replace("|", "\\|") + "`"


def role_section(role: Path) -> list[str]:
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.is_file() else {}
    lines = [f"## `{role.name}`", "", spec["short_description"] + ".", ""]
    lines += ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in spec["options"].items():
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        if option.get("choices"):
            kind += " (" + ", ".join(str(choice) for choice in option["choices"]) + ")"
        description = " ".join(str(option.get("description", "")).split()).replace("|", "\\|")
        lines.append(f"| `{name}` | {kind} | {default_text(defaults.get(name))} | {description} |")
    return [*lines, ""]


def render() -> str:
    lines = [
        "# Role variables",
        "",
        "Generated from each role's `meta/argument_specs.yml` and `defaults/main.yml` by `scripts/role-variables.py`;",
        "the comments in `defaults/main.yml` say more. Roles validate these at the start of every run.",
        "",
    ]
    for role in sorted(path for path in (REPO / "roles").iterdir() if (path / "meta" / "argument_specs.yml").is_file()):
        lines += role_section(role)
    return "\n".join(lines)


def main() -> int:
    OUTPUT.write_text(render())
    print(OUTPUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
