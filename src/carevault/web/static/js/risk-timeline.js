/* CareVault security dashboard: the risk timeline.
 *
 * Fetches the per-minute risk of security events as JSON from the canvas's data-url
 * (officer:risk_timeline) every 10 seconds and draws it with the locally served Chart.js:
 * the highest and the mean risk per minute, the number of events, and the thresholds of the
 * response levels as dashed lines.
 *
 * A static file under the strict Content-Security-Policy: no inline script, no eval, no style
 * attributes in markup (Chart.js sizes its canvas through the CSSOM, which the policy allows).
 */
"use strict";

(function () {
  const REFRESH_MS = 10000;
  const LEVEL_COLOURS = {
    "step-up": "#0dcaf0",
    contain: "#ffc107",
    suspend: "#fd7e14",
    rotate: "#dc3545",
  };

  function label(iso) {
    const when = new Date(iso);
    return when.toISOString().slice(11, 16);
  }

  function thresholdSets(thresholds, length) {
    return Object.keys(thresholds).map(function (name) {
      return {
        type: "line",
        label: name + " (" + thresholds[name] + ")",
        data: new Array(length).fill(thresholds[name]),
        yAxisID: "risk",
        borderColor: LEVEL_COLOURS[name] || "#6c757d",
        borderDash: [4, 4],
        borderWidth: 1,
        pointRadius: 0,
        fill: false,
      };
    });
  }

  function start() {
    const canvas = document.getElementById("risk-timeline");
    if (!canvas || typeof window.Chart === "undefined") {
      return;
    }
    const url = canvas.dataset.url;
    const chart = new window.Chart(canvas, {
      type: "line",
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        responsive: true,
        interaction: { mode: "index", intersect: false },
        scales: {
          risk: { type: "linear", position: "left", min: 0, max: 1, title: { display: true, text: "risk" } },
          events: {
            type: "linear",
            position: "right",
            beginAtZero: true,
            grid: { drawOnChartArea: false },
            title: { display: true, text: "events" },
          },
        },
      },
    });

    function draw(data) {
      const points = data.points || [];
      chart.data.labels = points.map(function (p) { return label(p.t); });
      chart.data.datasets = [
        {
          type: "line",
          label: "highest risk",
          data: points.map(function (p) { return p.max; }),
          yAxisID: "risk",
          borderColor: "#dc3545",
          backgroundColor: "#dc3545",
          pointRadius: 2,
          tension: 0.2,
        },
        {
          type: "line",
          label: "mean risk",
          data: points.map(function (p) { return p.mean; }),
          yAxisID: "risk",
          borderColor: "#0d6efd",
          backgroundColor: "#0d6efd",
          pointRadius: 0,
          tension: 0.2,
        },
        {
          type: "bar",
          label: "events",
          data: points.map(function (p) { return p.events; }),
          yAxisID: "events",
          backgroundColor: "rgba(108, 117, 125, 0.35)",
        },
      ].concat(thresholdSets(data.thresholds || {}, points.length));
      chart.update();
    }

    function refresh() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) { if (data) { draw(data); } })
        .catch(function () { /* the next refresh tries again */ });
    }

    refresh();
    window.setInterval(refresh, REFRESH_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
