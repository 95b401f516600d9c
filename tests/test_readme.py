"""The README is the newcomer's entry: it opens with the two commands and documents every setting."""

from pathlib import Path

import msgspec

from app.config import Config, env_name

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_opens_with_make_run_and_make_test():
    first_block = README.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_every_setting_is_documented_with_its_default():
    for field in msgspec.structs.fields(Config):
        assert f"`{env_name(field.name)}`" in README, f"{env_name(field.name)} is not in the README"
