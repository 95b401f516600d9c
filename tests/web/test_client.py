"""The web client's own checks: its Vitest component tests, and the size of the first page."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess

import pytest

from tests.web.conftest import WEB

BUDGET = 250 * 1024


def test_vitest_component_tests_pass(web_dist):
    if shutil.which("npm") is None:
        pytest.skip("NO COMPONENT TESTS: npm is not installed")
    run = subprocess.run(["npm", "test", "--silent"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]


def test_first_page_javascript_is_under_250_kb_gzipped(web_dist):
    index = (web_dist / "index.html").read_text()
    scripts = re.findall(r'<script[^>]+src="(/assets/[^"]+\.js)"', index)
    preloads = re.findall(r'<link[^>]+rel="modulepreload"[^>]+href="(/assets/[^"]+\.js)"', index)
    assert scripts, index
    size = sum(len(gzip.compress((web_dist / path.lstrip("/")).read_bytes(), 9)) for path in {*scripts, *preloads})
    assert size < BUDGET, f"first page JavaScript is {size} bytes gzipped"
