"""Access helpers: fetch-and-check in one step (healthchecks' ``_get_patient_for_user``).

Every refusal is audited and answered with 404 (the object's existence is not confirmed) or 403
(the role may never do this), never with data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo

F = TypeVar("F", bound=Callable[..., HttpResponse])


def deny(
    request: HttpRequest,
    *,
    reason: str,
    target_type: str = "",
    target_id: Any = "",
    status: int = 404,
) -> NoReturn:
    """Audit a refusal and raise the matching HTTP error."""
    record(
        "access.denied",
        actor=request.user,
        outcome=Outcome.DENIED,
        target_type=target_type,
        target_id=str(target_id),
        client=ClientInfo.from_request(request),
        details={"reason": reason, "path": request.path[:200], "method": request.method},
    )
    if status == 403:
        raise PermissionDenied(reason)
    raise Http404("not found")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF failure view (settings.CSRF_FAILURE_VIEW): a signed-in user's form without
    a valid token or from a foreign origin is audited as a denial, so a run of them is probing
    to the security layer (rules.denial_run); an anonymous one is not audited (a flood must not
    turn into audit-chain writes), as the API's own check does. Answered as Django does."""
    from django.views.csrf import csrf_failure as answer

    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        record(
            "access.denied",
            actor=user,
            outcome=Outcome.DENIED,
            client=ClientInfo.from_request(request),
            details={"reason": "csrf", "path": request.path[:200], "method": request.method},
        )
    return answer(request, reason=reason)


def role_required(*roles: str) -> Callable[[F], F]:
    """Only these roles may call the view; anyone else gets 403 and an audit entry."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        @login_required
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if getattr(request.user, "role", None) not in roles:
                deny(request, reason=f"role may not use {view.__name__}", status=403)
            return view(request, *args, **kwargs)

        wrapper.allowed_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
