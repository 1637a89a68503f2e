import pytest
from test_e2e import ALICE, open_record_of

WIDEST = """() => {
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > 376) out.push([el.tagName, el.className, el.id, Math.round(r.left), Math.round(r.right), (el.textContent||'').trim().slice(0,40)]);
  }
  return out.slice(0, 25);
}"""

@pytest.mark.browser
@pytest.mark.parametrize("mobile", [True, False])
def test_probe(login_as, mobile, screenshot_dir):
    page = login_as("doctor1", viewport={"width": 375, "height": 812}, is_mobile=mobile, has_touch=mobile)
    for url in ["/clinic/doctor/", None]:
        if url is None:
            open_record_of(page, ALICE)
        print(mobile, page.url, page.evaluate("[window.innerWidth, document.documentElement.scrollWidth, document.documentElement.clientWidth]"))
        for row in page.evaluate(WIDEST):
            print("   ", row)
    page.screenshot(path=f"/tmp/probe-{mobile}.png", full_page=True)
