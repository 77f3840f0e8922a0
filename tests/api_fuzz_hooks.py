"""Schemathesis hooks for tests/api_fuzz_netns.py: keep the fuzzing caller's own account usable.

The run acts as the provider admin with one bearer token. A generated PATCH/PUT/DELETE/POST on
that very user (a new password, disabled, deleted), on its tenant or on its token (revoked) would
leave every later request a 401, testing nothing. Those few cases are dropped; every other value
of every operation is still generated. The caller's ids come from the environment
(TW_FUZZ_USER_ID, TW_FUZZ_TENANT_ID, TW_FUZZ_TOKEN_ID), set by the runner after logging in.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Drop a changing request aimed at the caller's own user, tenant or token."""
    if case.method.upper() not in CHANGING:
        return True
    params = case.path_parameters or {}
    own_user = os.environ.get("TW_FUZZ_USER_ID", "")
    own_tenant = os.environ.get("TW_FUZZ_TENANT_ID", "")
    own_token = os.environ.get("TW_FUZZ_TOKEN_ID", "")
    if "user_id" in params and str(params["user_id"]) == own_user:
        return False
    if "token_id" in params and str(params["token_id"]) == own_token:
        return False
    return not ("tenant_id" in params and str(params["tenant_id"]) == own_tenant)
