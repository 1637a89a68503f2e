"""The officer's shared table and row action: what every section of the dashboard renders."""

from __future__ import annotations

from types import SimpleNamespace

from django.template import Context, Template
from django.urls import reverse

LOAD = "{% load officer_tables %}"


def render(source: str, **context: object) -> str:
    return Template(LOAD + source).render(Context(context))


def test_a_row_action_is_a_post_form_that_htmx_sends_and_swaps_into_its_section() -> None:
    html = render(
        '{% row_action "officer:lift_cut_off" 7 target="#cut-offs" label="Lift" %}',
        csrf_token="TOKEN",
    )
    url = reverse("officer:lift_cut_off", args=[7])
    assert f'method="post" action="{url}"' in html
    assert f'hx-post="{url}" hx-target="#cut-offs" hx-swap="outerHTML"' in html
    assert 'name="csrfmiddlewaretoken" value="TOKEN"' in html
    assert '<button class="btn btn-sm btn-outline-primary" type="submit">Lift</button>' in html
    assert "hx-confirm" not in html
    assert 'class="d-inline"' not in html


def test_a_row_action_asks_about_its_row_and_escapes_what_the_row_holds() -> None:
    block = SimpleNamespace(address='<img src="x">')
    html = render(
        '{% row_action "officer:unblock_address" target="#b" label="Unblock" style="danger"'
        ' inline=True confirm="Unblock {0.address}?" subject=block'
        ' hidden_name="address" hidden_value=block.address %}',
        block=block,
    )
    assert 'hx-confirm="Unblock &lt;img src=&quot;x&quot;&gt;?"' in html
    assert 'name="address" value="&lt;img src=&quot;x&quot;&gt;"' in html
    assert '<form class="d-inline"' in html
    assert "btn-outline-danger" in html


def test_a_table_has_a_header_per_column_and_an_unlabelled_one_for_actions() -> None:
    html = render(
        '{% officer_table rows row="officer/rows/block.html" columns="Address|Reason"'
        ' actions=True empty="None." %}',
        rows=[SimpleNamespace(address="192.0.2.1", since=None, until=None, reason="spray")],
    )
    assert '<th scope="col">Address</th><th scope="col">Reason</th><th scope="col"></th>' in html
    assert '<tr class="blocked-address">' in html
    assert "None." not in html


def test_an_empty_table_says_so_in_a_sentence_or_in_a_row_where_the_table_stays() -> None:
    sentence = render(
        '{% officer_table rows row="x.html" columns="A|B" empty="Nothing <code>here</code>." %}',
        rows=[],
    )
    assert "<table" not in sentence
    assert '<p class="text-body-secondary">Nothing <code>here</code>.</p>' in sentence
    in_table = render(
        '{% officer_table rows row="x.html" columns="A|B" empty_row=True empty="None." %}',
        rows=[],
    )
    assert '<td colspan="2" class="text-body-secondary">None.</td>' in in_table
