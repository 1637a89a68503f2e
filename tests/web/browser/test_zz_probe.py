import pytest


@pytest.mark.browser
@pytest.mark.parametrize(
    "who,urls",
    [
        ("patient1", ["/clinic/me/", "/clinic/me/history/"]),
        ("labtech1", ["/labs/"]),
        ("admin", ["/security/", "/security/users/"]),
    ],
)
def test_probe(login_as, who, urls):
    page = login_as(who, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    for url in urls:
        page.goto(url)
        print(
            who,
            page.url,
            page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]"),
        )
        page.screenshot(path=f"/tmp/probe-{who}-{url.replace('/', '_')}.png", full_page=True)
