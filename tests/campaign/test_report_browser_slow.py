"""The lab report rendered in headless Chromium (slow suite): it loads offline, every embedded
picture decodes, the table sorts on a header click, and a screenshot is not blank.

Needs a Chromium binary: Debian ``apt-get install chromium-headless-shell`` (or ``chromium``),
or ``$MATGEN_CHROMIUM``; skipped when none is found.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from matgen.campaign import Campaign, export_campaign, load_config

pytestmark = pytest.mark.slow

_CANDIDATES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


def _chromium() -> str | None:
    if os.environ.get("MATGEN_CHROMIUM"):
        return os.environ["MATGEN_CHROMIUM"]
    return next((p for p in map(shutil.which, _CANDIDATES) if p), None)


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory, toy_csv):
    from _toy import write_toy_config

    d = tmp_path_factory.mktemp("browser")
    camp = Campaign(load_config(write_toy_config(d, toy_csv)))
    camp.run()
    return export_campaign(camp.store, d / "out", camp.cfg.property_names()) / "report.html"


def test_report_renders_in_headless_chromium(report, tmp_path):
    import numpy as np
    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium binary (apt-get install chromium-headless-shell)")
    shot = tmp_path / "report.png"
    res = _run(browser, "--window-size=1300,2400", f"--screenshot={shot}", report.as_uri())
    assert shot.exists(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (2400, 1300)
    assert img.std() > 20  # text, tables and plots, not an empty page
    # the DOM after the scripts ran: every embedded PNG decoded, the sorter is attached
    probe = report.with_name("probe.html")
    probe.write_text(report.read_text().replace("</main>", """<script>
window.addEventListener('load', function(){
 var bad = Array.prototype.filter.call(document.images, function(i){
  return !(i.complete && i.naturalWidth > 0)}).length;
 var th = document.querySelector('#candidates th.sort[title=rank]'); th.click(); th.click();
 var ranks = Array.prototype.map.call(document.querySelectorAll('#candidates tbody tr'),
  function(r){return r.cells[th.cellIndex].getAttribute('data-v')});
 document.body.setAttribute('data-probe', JSON.stringify({images: document.images.length,
  bad: bad, ranks: ranks}));});
</script></main>"""))
    dom = _run(browser, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
    import html
    import json
    import re

    m = re.search(r'data-probe="([^"]*)"', dom)
    assert m, dom[:2000]
    probe_out = json.loads(html.unescape(m.group(1)))
    assert probe_out["images"] >= 6 and probe_out["bad"] == 0
    ranks = [int(x) for x in probe_out["ranks"]]
    assert ranks == sorted(ranks, reverse=True)  # second click: descending
