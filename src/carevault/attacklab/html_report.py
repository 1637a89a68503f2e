"""The self-contained HTML report: one file, no CDN, no request anywhere (Chart.js is inlined
from the copy the app serves, under its MIT licence).

Three charts: the stolen model's agreement with the served one against answered queries, per
channel, next to the free baseline; the risk of every security event over the run with each
attack's window marked; and the detection delay (attack requests before the first incident)
per scenario. Then the table of every scenario with its findings. Every value from the run is
escaped in the page, and the chart data travel as JSON inside a ``<script
type="application/json">`` block whose ``<`` are escaped, so nothing in a finding can break
out into markup.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

CHART_JS = (
    Path(__file__).resolve().parents[1]
    / "web"
    / "static"
    / "vendor"
    / "chartjs"
    / "chart.umd.min.js"
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.held{color:#116329;font-weight:600}.failed,.error{color:#a40e26;
font-weight:600}.skipped{color:#57606a}.summary{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.4rem}.chart{max-width:60rem;height:22rem}
ul{margin:.2rem 0;padding-left:1.2rem}small{color:#57606a}
"""

# JavaScript, kept readable rather than wrapped at 100 columns.
SCRIPT = """
const data = JSON.parse(document.getElementById('lab-data').textContent);
const palette = ['#0969da','#bf3989','#1a7f37','#9a6700','#8250df','#cf222e','#1b7c83','#6e7781'];
function chart(id, config) {
  const el = document.getElementById(id);
  if (el && window.Chart) { new Chart(el, config); }
}
const ext = data.extraction;
if (ext && Object.keys(ext.channels).length) {
  const sets = Object.entries(ext.channels).map(([name, points], i) => ({
    label: name, data: points.map(p => ({x: p[0], y: 100 * p[1]})),
    borderColor: palette[i % palette.length], showLine: true, fill: false}));
  const maxX = Math.max(1, ...sets.flatMap(s => s.data.map(p => p.x)));
  if (ext.baseline !== null) {
    sets.push({label: 'free baseline (public cases, no query)', data: [{x: 0, y: 100 * ext.baseline},
      {x: maxX, y: 100 * ext.baseline}], borderColor: '#6e7781', borderDash: [6, 4], showLine: true,
      pointRadius: 0});
  }
  chart('extraction', {type: 'scatter', data: {datasets: sets}, options: {maintainAspectRatio: false,
    scales: {x: {title: {display: true, text: 'answered queries'}},
             y: {title: {display: true, text: 'agreement with the served model (%)'}}}}});
}
if (data.timeline.events.length) {
  const t0 = data.timeline.start;
  const sets = [{label: 'security events', data: data.timeline.events.map(e => ({x: e[0] - t0, y: e[1]})),
    backgroundColor: '#6e7781', pointRadius: 2}];
  data.timeline.windows.forEach((w, i) => sets.push({label: w.name, data: [{x: w.start - t0, y: 1},
    {x: w.end - t0, y: 1}], borderColor: palette[i % palette.length], borderWidth: 6, showLine: true,
    pointRadius: 0}));
  chart('timeline', {type: 'scatter', data: {datasets: sets}, options: {maintainAspectRatio: false,
    plugins: {legend: {display: false}},
    scales: {x: {title: {display: true, text: 'seconds into the run (bars at the top: attacks)'}},
             y: {min: 0, max: 1.05, title: {display: true, text: 'risk'}}}}});
}
const delays = data.delays;
if (delays.length) {
  chart('delays', {type: 'bar', data: {labels: delays.map(d => d.name), datasets: [{
    label: 'attack requests before the first incident', data: delays.map(d => d.after),
    backgroundColor: delays.map(d => d.after === null ? '#cf222e' : '#0969da')}]},
    options: {maintainAspectRatio: false, indexAxis: 'y', plugins: {legend: {display: false}},
      scales: {x: {title: {display: true, text: 'attack requests (red: no incident)'}}}}});
}
"""  # noqa: E501


def chart_data(data: dict[str, Any]) -> dict[str, Any]:
    """What the charts draw, taken from the JSON report."""
    baseline: float | None = None
    channels: dict[str, list[list[float]]] = {}
    windows, delays = [], []
    for result in data.get("results", []):
        outcome = result.get("outcome") or {}
        extraction = (outcome.get("metrics") or {}).get("extraction")
        if isinstance(extraction, dict):
            if isinstance(extraction.get("baseline"), int | float):
                baseline = float(extraction["baseline"])
            for name, points in (extraction.get("channels") or {}).items():
                channels[str(name)] = [[float(q), float(a)] for q, a in points]
        if result.get("status") in ("held", "failed"):
            windows.append(
                {
                    "name": result["name"],
                    "start": result["started"],
                    "end": result["started"] + result["seconds"],
                }
            )
        detection = result.get("detection") or {}
        if detection.get("expected") and detection.get("observed"):
            delays.append({"name": result["name"], "after": detection.get("first_incident_after")})
    timeline = data.get("timeline") or {}
    events = [[float(t), float(r)] for t, r in timeline.get("events", [])]
    start = min([w["start"] for w in windows] + [e[0] for e in events], default=0.0)
    return {
        "extraction": {"baseline": baseline, "channels": channels},
        "timeline": {"start": start, "events": events, "windows": windows},
        "delays": delays,
    }


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rows(data: dict[str, Any]) -> str:
    rows = []
    for r in data.get("results", []):
        outcome = r.get("outcome") or {}
        detection = r.get("detection") or {}
        verdict = detection.get("verdict", "")
        if verdict == "detected":
            verdict = (
                f"incident after {detection.get('first_incident_after')} requests "
                f"({detection.get('level')})"
            )
        findings = "".join(f"<li>{_e(f)}</li>" for f in outcome.get("findings", []))
        if r.get("reason"):
            findings += f"<li>{_e(r['reason'])}</li>"
        rows.append(
            "<tr>"
            f"<td><b>{_e(r['name'])}</b><br><small>{_e(r['attacks'])}</small></td>"
            f"<td class='{_e(r['status'])}'>{_e(r['status'])}</td>"
            f"<td>{_e(', '.join(outcome.get('defences', [])))}</td>"
            f"<td>{_e(verdict)}</td>"
            f"<td>{_e(outcome.get('leaked', '-'))}</td><td>{_e(outcome.get('lost', '-'))}</td>"
            f"<td>{_e(r['requests'])}</td>"
            f"<td><small>held means: {_e(r['held_means'])}</small><ul>{findings}</ul></td>"
            "</tr>"
        )
    return "".join(rows)


def render(data: dict[str, Any]) -> str:
    summary = data.get("summary", {})
    cards = "".join(
        f"<div class='card'><b>{_e(summary.get(key, 0))}</b>{_e(label)}</div>"
        for key, label in (
            ("held", "held"),
            ("failed", "failed"),
            ("errors", "errors"),
            ("skipped", "skipped"),
            ("leaked", "leaked"),
            ("lost", "lost"),
            ("detected", f"detected of {summary.get('detection_expected', 0)}"),
            ("honest_users_harmed", "honest users harmed"),
        )
    )
    payload = json.dumps(chart_data(data)).replace("<", "\\u003c")
    chart_js = CHART_JS.read_text(encoding="utf-8") if CHART_JS.is_file() else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CareVault attack lab report</title><style>{STYLE}</style></head>
<body><main>
<h1>CareVault attack lab</h1>
<p>Target: {_e(data.get("target", ""))} &middot; generated {_e(data.get("generated", ""))}
&middot; {"quick run" if data.get("quick") else "full run"}</p>
<div class="summary">{cards}</div>
<h2>Extraction: agreement against answered queries</h2>
<div class="chart"><canvas id="extraction" aria-label="extraction agreement per channel"
 role="img"></canvas></div>
<h2>Risk timeline, each attack marked</h2>
<div class="chart"><canvas id="timeline" aria-label="risk of each security event over the run"
 role="img"></canvas></div>
<h2>Detection delay per scenario</h2>
<div class="chart"><canvas id="delays" aria-label="attack requests before the first incident"
 role="img"></canvas></div>
<h2>Scenarios</h2>
<table><thead><tr><th scope="col">scenario</th><th scope="col">result</th>
<th scope="col">defences that fired</th><th scope="col">AI layer</th><th scope="col">leaked</th>
<th scope="col">lost</th><th scope="col">requests</th><th scope="col">findings</th></tr></thead>
<tbody>{_rows(data)}</tbody></table>
</main>
<script type="application/json" id="lab-data">{payload}</script>
<script>{chart_js}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
