"""JSON responses and the ``api_view`` decorator: authentication, method, CSRF, roles and errors,
all answered in JSON (``{"error": {"code", "message"}}``) instead of HTML pages or redirects."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from carevault.web.access import deny
from carevault.web.accounts.models import User
from carevault.web.audit.log import Outcome, record
from carevault.web.clientinfo import ClientInfo
from carevault.web.errors import ActionError, ValidationFailed
from carevault.web.inputs import InputRejected, max_body_bytes, parse_json

PAGE_SIZE = 50
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

View = Callable[..., HttpResponse]


class ApiRequest(HttpRequest):
    """A request that passed :func:`api_view`: the user is logged in."""

    user: User


def ok(data: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status)


def error(code: str, message: str, status: int, *, field: str | None = None) -> JsonResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return JsonResponse({"error": body}, status=status)


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, returning the reason instead of an HTML 403 page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    check = _CsrfCheck(lambda req: HttpResponse())
    check.process_request(request)
    reason = check.process_view(request, lambda req: HttpResponse(), (), {})
    return None if reason is None else str(reason)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object; anything else is a 400 that says what was wrong (413
    when it is too large), raised as :class:`InputRejected` (see web/inputs.py)."""
    limit = max_body_bytes()
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise InputRejected("too_large", f"the body is larger than {limit} bytes", 413)
    # Read from the stream with a bound of our own, not request.body (Django's form-post limit).
    data = parse_json(request.read(limit + 1), max_bytes=limit)
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object")
    return data


def paginate(request: HttpRequest, items: QuerySet[Any]) -> tuple[list[Any], dict[str, int]]:
    """One page of ``items`` (``?page=``, from 1) and the facts a client needs to page on."""
    raw = request.GET.get("page", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed("page must be a whole number from 1", field="page")
    paginator = Paginator(items, PAGE_SIZE)
    try:
        page = paginator.page(int(raw))
    except EmptyPage:
        raise Http404("no such page") from None
    facts = {"page": page.number, "pages": paginator.num_pages, "count": paginator.count}
    return list(page.object_list), facts


def api_view(
    *, methods: Sequence[str], roles: Sequence[str] | None = None
) -> Callable[[View], View]:
    """Wrap an API view: 401 for anonymous users, 405 for other methods, CSRF for writes,
    403 (audited) for other roles, and every error as JSON."""

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            # Not audited: an anonymous flood must not turn into audit-chain writes.
            if not request.user.is_authenticated:
                return error("not_authenticated", "log in first", 401)
            if request.method not in methods:
                response = error("method_not_allowed", f"use {' or '.join(methods)}", 405)
                response["Allow"] = ", ".join(methods)
                return response
            if request.method not in SAFE_METHODS:
                reason = _csrf_failure(request)
                if reason is not None:
                    record(
                        "access.denied",
                        actor=request.user,
                        outcome=Outcome.DENIED,
                        client=ClientInfo.from_request(request),
                        details={"reason": "csrf", "path": request.path[:200]},
                    )
                    return error(
                        "csrf_failed", "CSRF check failed; send the X-CSRFToken header", 403
                    )
            try:
                if roles is not None and request.user.role not in roles:
                    deny(request, reason=f"role may not use api {view.__name__}", status=403)
                return view(request, *args, **kwargs)
            except ActionError as exc:
                return error(exc.code, exc.message, exc.status, field=exc.field)
            except InputRejected as exc:
                return error(exc.code, exc.message, exc.status)
            except Http404:
                return error("not_found", "not found", 404)
            except PermissionDenied:
                return error("forbidden", "you may not do this", 403)

        # Session-authenticated writes are CSRF-checked above, in JSON; not by the middleware.
        return csrf_exempt(wrapper)

    return decorator
