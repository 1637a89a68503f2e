"""The two pieces every section of the officer's pages repeats, written once.

``officer_table``: a section's table (a header row, one row per item from a row template, and an
empty state: a sentence instead of the table, or a row inside it where the table must stay, as
under the audit log's filters). ``row_action``: the button on a row that changes something, a
POST form with its CSRF token that htmx sends and swaps the section in place with, and that
still works without JavaScript (the view then redirects back to the page)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("officer/_table.html")
def officer_table(
    rows: Any,
    *,
    row: str,
    columns: str,
    empty: str,
    actions: bool = False,
    small: bool = False,
    hover: bool = False,
    empty_small: bool = False,
    empty_row: bool = False,
) -> dict[str, Any]:
    """``columns`` are the header labels separated by ``|`` (a template cannot write a list);
    ``actions`` adds the unlabelled last column that holds the row actions. ``row`` names the
    template that renders one item, as ``row``. ``empty`` is written as it stands: a string
    literal in a template is trusted markup, so it may hold a ``<code>``."""
    labels = [label.strip() for label in columns.split("|")]
    if actions:
        labels.append("")
    return {
        "rows": rows,
        "row_template": row,
        "columns": labels,
        "empty": empty,
        "small": small,
        "hover": hover,
        "empty_small": empty_small,
        "empty_row": empty_row,
    }


@register.inclusion_tag("officer/_row_action.html")
def row_action(
    url_name: str,
    *url_args: Any,
    target: str,
    label: str,
    style: str = "primary",
    confirm: str = "",
    subject: Any = None,
    inline: bool = False,
    hidden_name: str = "",
    hidden_value: Any = "",
) -> dict[str, Any]:
    """A POST to ``url_name`` (reversed with ``url_args``) whose answer replaces ``target``.
    ``confirm`` is a question htmx asks first, formatted with ``subject`` (``{0.pk}``): the
    question names the row it acts on. Django copies the CSRF token into this tag's context."""
    url = reverse(url_name, args=url_args)
    return {
        "url": url,
        "target": target,
        "label": label,
        "style": style,
        "confirm": confirm.format(subject) if confirm else "",
        "inline": inline,
        "hidden_name": hidden_name,
        "hidden_value": hidden_value,
    }
