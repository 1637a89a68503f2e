"""``carevault bench models``: the protected diagnosis models, every part measured (issue 7).

Runs each part's own benchmark in turn and prints their tables one after the other:

* ``homomorphic``: CKKS scoring of the logistic model (single p50/p99, batched per patient,
  agreement with plaintext), ``carevault.bench.models_he``;
* ``multiparty``: three-party MPyC scoring (per prediction, amortised, agreement),
  ``carevault.bench.models_mpc``;
* ``extraction``: the attack lab against the output policies, budgets and monitor,
  ``carevault.bench.models_extraction``;
* ``training``: poison screening, differential privacy and membership inference,
  ``carevault.bench.models_training``.

``--part NAME`` runs one of them. A part whose module is missing is reported as such, never
skipped in silence.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

PARTS: dict[str, str] = {
    "homomorphic": "carevault.bench.models_he",
    "multiparty": "carevault.bench.models_mpc",
    "extraction": "carevault.bench.models_extraction",
    "training": "carevault.bench.models_training",
}


def run(quick: bool = False, parts: list[str] | None = None) -> dict[str, Any]:
    chosen = parts or list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part {unknown[0]!r}; parts: {', '.join(PARTS)}")
    results: dict[str, Any] = {}
    for part in chosen:
        try:
            module = importlib.import_module(PARTS[part])
        except ModuleNotFoundError as exc:
            if exc.name != PARTS[part]:
                raise
            results[part] = {"missing": f"{PARTS[part]} is not built"}
            continue
        started = time.perf_counter()
        result = module.run(quick=quick)
        result["seconds"] = round(time.perf_counter() - started, 1)
        results[part] = result
    return {"benchmark": "models", "quick": quick, "parts": results}


def render(result: dict[str, Any]) -> str:
    out = []
    for part, data in result["parts"].items():
        out.append(f"== {part} ==")
        if "missing" in data:
            out.append(f"not measured: {data['missing']}")
        else:
            module = importlib.import_module(PARTS[part])
            out.append(module.render(data))
            out.append(f"({data['seconds']} s)")
        out.append("")
    return "\n".join(out).rstrip()
