"""A glint process raises its own soft open-file limit to the hard limit (every socket is a file)."""

import subprocess
import sys

CHILD = """
import resource
from app.fdlimit import raise_open_file_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
now = raise_open_file_limit()
assert now == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0], (now, hard)
print(now)
"""


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit():
    # in a child process, whose limits may be lowered first without touching the test run's
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
