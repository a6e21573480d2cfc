"""The evaluation's report: markdown tables laid out like the paper's, a CSV, the JSON and the plots.

Reads an :class:`core.evaluation.protocol.EvalResult`; writes only into the folder it is given.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from core.evaluation.results import LABELS, EvalResult
from core.method.engine import FAParams


def _label(col: str) -> str:
    if col.endswith("-N"):
        return LABELS[col[:-2]] + "-N"
    return LABELS[col]


def markdown_table(result: EvalResult, dataset: str | None = None) -> str:
    """The results laid out like the seed's tables: one row per dataset/model, one column per method.

    Includes MP@k and MAP@k, and (when present) the ``h_on`` sweep (Fig. A1) and the relative gain over
    CBIR by number of objects (Fig. A2).
    """
    k = result.k
    info = result.info
    ds = dataset or str(info.get("dataset", ""))
    model = str(info.get("model_label", info.get("model", "")))
    cols = list(result.metrics)
    lines = []
    for name, attr in ((f"MP@{k}", "mp"), (f"MAP@{k}", "map")):
        lines.append("| Dataset | Model | " + " | ".join(_label(c) for c in cols) + " |")
        lines.append("|---|---|" + "---:|" * len(cols))
        lines.append(f"| {ds} | {model} | " + " | ".join(f"{getattr(result.metrics[c], attr):.1f}" for c in cols) + " |")
        lines.append("")
        lines.append(
            f"Metric: {name} (%). {result.metrics[cols[0]].n_queries} prompted objects in "
            f"{result.metrics[cols[0]].n_images} query images, database {info.get('n_database')} images; "
            f"prompt {info.get('prompt')}, h_on {info.get('h_on')}, ROI {info.get('roi')}, "
            f"strategy {info.get('strategy')}"
            + (f", noise m = {info.get('noise')} px ("
               + ("absolute, as the paper" if info.get("noise_scale") == "absolute" else "scaled from a 640 px side")
               + ")" if info.get("noise") is not None else "")
            + (f"; PHS (QD) re-ranks the Query-Only top {info.get('qd_candidates')} as shipped, top-{k} overlap "
               f"with the exact whole-database QD {info.get(f'qd_overlap@{k}')}%"
               if info.get(f"qd_overlap@{k}") is not None else "")
            + (f", ITAE theta {info.get('itae_theta')}" if info.get("itae_theta") is not None else "")
            + "."
        )
        lines.append("")
    gain = info.get("attention_gain_per_layer")
    if gain:
        layers = len(next(iter(gain.values())))
        lines.append("| marker | " + " | ".join(f"layer {i + 1}" for i in range(layers)) + " |")
        lines.append("|---|" + "---:|" * layers)
        for name, gains in gain.items():
            lines.append(f"| {LABELS[name]} | " + " | ".join(f"{100 * g:+.0f}%" for g in gains) + " |")
        lines.append("")
        lines.append(f"Relative attention gain on the marked tokens per layer (seed 004, Fig. 4), "
                     f"{info.get('attention_gain_images')}.")
        lines.append("")
    if info.get("localization"):
        from core.evaluation.localize import markdown

        lines.append(markdown(info["localization"]))
    if result.sweep:
        hs = sorted({h for d in result.sweep.values() for h in d})
        lines.append("| h_on | " + " | ".join(str(h) for h in hs) + " |")
        lines.append("|---|" + "---:|" * len(hs))
        for meth, d in result.sweep.items():
            lines.append(f"| {LABELS[meth]} | " + " | ".join(f"{d[h].mp:.1f}" if h in d else "" for h in hs) + " |")
        lines.append("")
        lines.append(f"MP@{k} (%) against the number of selected heads (Fig. A1).")
        lines.append("")
    if "cbir" in result.metrics:
        base = result.metrics["cbir"].min_num_objects
        ns = [n for n, g in base.items() if g.n_queries]
        others = [c for c in cols if c != "cbir"]
        if ns and others:
            lines.append("| objects >= | " + " | ".join(str(n) for n in ns) + " |")
            lines.append("|---|" + "---:|" * len(ns))
            lines.append("| CBIR MP | " + " | ".join(f"{base[n].mp:.1f}" for n in ns) + " |")
            for c in others:
                g = result.metrics[c].min_num_objects
                cells = [f"{100.0 * (g[n].mp / base[n].mp - 1.0):+.1f}%" if base[n].mp > 0 else "" for n in ns]
                lines.append(f"| {_label(c)} | " + " | ".join(cells) + " |")
            lines.append("")
            lines.append(f"Relative MP@{k} gain over CBIR for query images with at least n objects (Fig. A2).")
            lines.append("")
    return "\n".join(lines)


def write_csv(result: EvalResult, path: Path) -> None:
    """One row per column (method) with MP@k, MAP@k and the query counts; the sweep as extra rows."""
    k = result.k
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "h_on", f"MP@{k}", f"MAP@{k}", "n_prompts", "n_query_images", "qd_candidates",
                    f"qd_overlap@{k}"])
        overlap = result.info.get(f"qd_overlap@{k}")

        def qd_cells(method: str) -> list[Any]:
            if method == "phs-qd":
                return [result.info.get("qd_candidates"), overlap]
            return ["all", overlap] if method == "phs-qd-exact" else ["", ""]

        for c, m in result.metrics.items():
            w.writerow([c, result.info.get("h_on"), f"{m.mp:.4f}", f"{m.map:.4f}", m.n_queries, m.n_images,
                        *qd_cells(c)])
        for meth, d in result.sweep.items():
            for h, m in d.items():
                w.writerow([meth, h, f"{m.mp:.4f}", f"{m.map:.4f}", m.n_queries, m.n_images, *qd_cells(meth)])


def write_plots(result: EvalResult, out_dir: Path) -> list[Path]:
    """matplotlib plots: ``h_on`` sweep (Fig. A1), noise robustness (Table A3), gain vs objects (Fig. A2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.k
    written: list[Path] = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        written.append(out_dir / f"{name}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    if result.sweep:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for meth, d in result.sweep.items():
            hs = sorted(d)
            ax.plot(hs, [d[h].mp for h in hs], marker="o", label=LABELS[meth])
        if "cbir" in result.metrics:
            ax.axhline(result.metrics["cbir"].mp, color="grey", ls="--", label="CBIR")
        ax.set_xlabel("h_on (selected heads)")
        ax.set_ylabel(f"MP@{k} (%)")
        ax.legend()
        save(fig, "h_on_sweep")
    noisy = [c[:-2] for c in result.metrics if c.endswith("-N")]
    if noisy:
        fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(noisy)), 3.5))
        x = np.arange(len(noisy))
        ax.bar(x - 0.2, [result.metrics[m].mp for m in noisy], 0.4, label="clean")
        ax.bar(x + 0.2, [result.metrics[f"{m}-N"].mp for m in noisy], 0.4, label="noisy")
        ax.set_xticks(x, [LABELS[m] for m in noisy], rotation=20)
        ax.set_ylabel(f"MP@{k} (%)")
        ax.legend()
        save(fig, "noise_robustness")
    if "cbir" in result.metrics and len(result.metrics) > 1:
        base = result.metrics["cbir"].min_num_objects
        ns = [n for n, g in base.items() if g.n_queries and g.mp > 0]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for c, m in result.metrics.items():
            if c == "cbir" or c.endswith("-N"):
                continue
            ax.plot(ns, [100.0 * (m.min_num_objects[n].mp / base[n].mp - 1.0) for n in ns], marker="o",
                    label=_label(c))
        ax.axhline(0.0, color="grey", ls="--")
        ax.set_xlabel("query images with at least n objects")
        ax.set_ylabel(f"relative MP@{k} vs CBIR (%)")
        ax.legend(fontsize=7)
        save(fig, "gain_vs_objects")
    per_layer = result.info.get("attention_gain_per_layer")
    if per_layer:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, gains in per_layer.items():
            ax.plot(range(1, len(gains) + 1), [100.0 * g for g in gains], marker="o", label=LABELS[name])
        ax.axhline(0.0, color="grey", ls="--")
        ax.set_xlabel("layer")
        ax.set_ylabel("relative attention gain on the marked tokens (%)")
        ax.legend()
        save(fig, "attention_gain")
    return written


def write_report(result: EvalResult, out_dir: Path, dataset: str | None = None) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv``, ``results.json`` and the plots into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    paths["markdown"].write_text(markdown_table(result, dataset) + "\n")
    write_csv(result, paths["csv"])
    paths["json"].write_text(json.dumps(result.to_json(), indent=2, default=_json_default) + "\n")
    for p in write_plots(result, out_dir):
        paths[p.stem] = p
    return paths


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if math.isnan(float(o)) else float(o)
    if isinstance(o, FAParams):
        return {"alpha": o.alpha, "sigma": o.sigma, "blocks": o.blocks}
    return str(o)
