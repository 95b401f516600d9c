"""The README is the newcomer's entry: it opens with the two commands and documents every setting."""

from pathlib import Path

from app.config import SETTINGS, readme_settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_opens_with_make_run_and_make_test():
    first_block = README.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_every_setting_is_documented_with_its_default():
    for setting in SETTINGS:
        assert f"`{setting.env}`" in README, f"{setting.env} is not in the README"
    assert readme_settings() in README, "the README's settings tables are stale: run `python -m app.config`"
