"""PLACEHOLDER for issue 20's signing helper (branch of /work/wt-egress): only
new_secret, so the management API's tests run. Dropped at merge."""

from __future__ import annotations

import base64
import secrets


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
