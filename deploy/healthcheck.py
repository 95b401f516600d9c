#!/usr/bin/env python3
"""Container healthcheck for glint processes (stdlib only; the slim image has no curl).

Exit 0 when GET http://127.0.0.1:$GLINT_HEALTH_PORT/healthz answers 2xx, else 1.

If GLINT_HEALTHCHECK_POKE_READYZ=1, it then also requests /readyz and ignores the
result: /readyz is what refreshes the glint_dependency_up gauge, so polling it keeps
that metric (and the GlintDependencyDown alert) current without making container
health depend on the backing stores.
"""
import os
import sys
import urllib.error
import urllib.request

PORT = os.environ.get("GLINT_HEALTH_PORT", "8080")
BASE = f"http://127.0.0.1:{PORT}"


def get(path: str, timeout: float = 3.0) -> int:
    with urllib.request.urlopen(BASE + path, timeout=timeout) as resp:  # noqa: S310
        return resp.status


def main() -> int:
    try:
        status = get("/healthz")
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthz failed: {exc}", file=sys.stderr)
        return 1
    if not 200 <= status < 300:
        print(f"healthz status {status}", file=sys.stderr)
        return 1
    if os.environ.get("GLINT_HEALTHCHECK_POKE_READYZ") == "1":
        try:
            get("/readyz")
        except (urllib.error.URLError, OSError):
            pass  # readiness is reported through glint_dependency_up, not here
    return 0


if __name__ == "__main__":
    sys.exit(main())
