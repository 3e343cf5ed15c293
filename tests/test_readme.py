"""The README is the front door: its commands and code must stay true."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_quick_start_has_exactly_the_two_commands() -> None:
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (commands,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.split("#")[0].strip() for line in commands.strip().splitlines()]
    assert lines == ["./scripts/demo", "./scripts/test"]
    for script in lines:
        assert (README.parent / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_python_examples_parse_and_their_imports_exist() -> None:
    for code in blocks("python"):
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("engine")
            ):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_toml_example_is_a_valid_configuration() -> None:
    import tomllib

    from engine.config import convert

    (example,) = blocks("toml")
    config = convert(tomllib.loads(example))
    assert config.connections[0].subscriptions[0].channel == "orderbook"
