"""profile: the profile page list, read as bench/scenarios/feed.py reads the home feed (its docstring
has the options)."""

from bench.scenarios.feed import page_scenario

prepare, work = page_scenario("profile")
