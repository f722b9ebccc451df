"""``truckcount eval counts``: the command and its plain-text report (see ``count_eval``).

Kept free of heavy imports: the model and the pipeline load only when the command runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from truckcount.cli_common import LabelFixesOpt
from truckcount.promotion import Verdict, compare


def format_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    win = report["match"]["window_s"]
    out = [f"model {report['model_version']}, camera {report['camera']}, match window ±{win} s"]
    out.append("")
    out.append(
        f"{'sequence':20} {'class':6} {'direction':18} {'true':>5} {'pred':>5} {'error':>6} "
        f"{'wrong':>5}"
    )
    for row in report["counts"]:
        out.append(
            f"{row['sequence']:20} {row['class']:6} {row['direction']:18} "
            f"{row['true']:>5} {row['pred']:>5} {row['error']:>+6} {_wrong(row):>5}"
        )
    out += [
        "",
        f"{'sequence':20} {'role':18} {'frames':>9} {'labelled':>8} {'gap':>4} "
        f"{'truck AP50':>10} {'bus AP50':>8} {'car AP50':>8}  matching",
    ]
    for s in report["sequences"]:
        ap = s["ap50"]
        m = ", ".join(f"{k} {v}" for k, v in s["matching"].items())
        out.append(
            f"{s['name']:20} {s['role'] + ' ' + s['light']:18} "
            f"{str(s['first']) + '-' + str(s['last']):>9} {s['frames']:>8} "
            f"{s['unobserved_frames']:>4} {_ap(ap, 'truck'):>10} {_ap(ap, 'bus'):>8} "
            f"{_ap(ap, 'car'):>8}  {m}"
        )
    out += ["", f"{'group':28} {'MAE':>6} {'MAPE':>6} {'truck MAE':>9} {'truck MAPE':>10}"]
    for name, g in report["errors"].items():
        a, t = g["all"], g["truck"]
        out.append(
            f"{name:28} {_num(a['mae']):>6} {_num(a['mape']):>6} "
            f"{_num(t['mae']):>9} {_num(t['mape']):>10}"
        )
    return "\n".join(out + _unmatched(report.get("crossings", {})))


def _wrong(row: dict[str, Any]) -> str:
    """A count row's event errors (crossings missed, doubled, invented or of another class or
    direction); reports written before they were recorded have none."""
    return str(row.get("event_errors", "-"))


def format_markdown(report: dict[str, Any]) -> str:
    """Truck, bus and car counts per sequence and direction, and AP50, as Markdown tables."""
    seqs = {s["name"]: s for s in report["sequences"]}
    out = [
        f"Model `{report['model_version']}`, camera `{report['camera']}`, crossings matched "
        f"within ±{report['match']['window_s']} s.",
        "",
        "| sequence | frames | class | direction | true | predicted | error | wrong |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in report["counts"]:
        s = seqs[r["sequence"]]
        what = f"{s['first']}–{s['last']} ({s['role']}, {s['light']})"
        out.append(
            f"| {r['sequence']} | {what} | {r['class']} | {r['direction']} | {r['true']} "
            f"| {r['pred']} | {r['error']:+d} | {_wrong(r)} |"
        )
    kinds = " | ".join(k.replace("_", " ") for k in report["matching"])
    out += ["", f"| sequence | truck AP50 | bus AP50 | car AP50 | {kinds} |"]
    out.append("|---" * (4 + len(report["matching"])) + "|")
    for s in report["sequences"]:
        ap = " | ".join(_ap(s["ap50"], c) for c in ("truck", "bus", "car"))
        out.append(f"| {s['name']} | {ap} | " + " | ".join(map(str, s["matching"].values())) + " |")
    out += ["", "| group | MAE | MAPE | truck MAE | truck MAPE |", "|---|---:|---:|---:|---:|"]
    for name, g in report["errors"].items():
        a, t = g["all"], g["truck"]
        out.append(
            f"| {name} | {_num(a['mae'])} | {_num(a['mape'])} | {_num(t['mae'])} "
            f"| {_num(t['mape'])} |"
        )
    return "\n".join(out)


def _unmatched(crossings: dict[str, list[dict[str, Any]]]) -> list[str]:
    out: list[str] = []
    if not crossings:
        return out  # a baseline file keeps no crossing lists
    for kind in ("misses", "double_counts", "extras", "wrong_direction"):
        items = crossings.get(kind, [])
        out += ["", f"{kind.replace('_', ' ')}: {len(items)}"]
        for item in items:
            c = item["pred"] if kind == "wrong_direction" else item
            what = f"{c['class']} {c['direction']}"
            if kind == "wrong_direction":
                what = (
                    f"true {item['true']['direction']}, predicted {c['direction']} ({c['class']})"
                )
            out.append(
                f"  {c['sequence']} frame {c['frame']} (t {c['t']:.1f} s, u {c['u']:.2f}) "
                f"{what}, track {c['track_id']}"
            )
    return out


def _ap(ap: dict[str, float], name: str) -> str:
    v = ap.get(name)
    return "-" if v is None or v < 0 else f"{v:.3f}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def eval_counts(
    data: Annotated[Path, typer.Argument(help="YOLO-format folder: images/, labels/, data.yaml")],
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config with the camera")],
    camera: Annotated[str | None, typer.Option(help="camera id (default: the only one)")] = None,
    sequences: Annotated[
        Path | None, typer.Option(help="YAML list of sequences (fps, start, frame range, role)")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="checkpoint (default: config's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print Markdown tables")] = False,
    write_baseline: Annotated[
        Path | None, typer.Option(help="also write the report without crossing lists here")
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            help="baseline report: exit 1 unless truck counting is no worse (promotion gate)"
        ),
    ] = None,
    label_fixes: LabelFixesOpt = None,
) -> None:
    """Count accuracy against ground truth linked from the labels, per sequence/class/direction."""
    from truckcount.aggregator.groundtruth import load_spec
    from truckcount.cli_common import guard as _guard
    from truckcount.config import load_config
    from truckcount.count_eval import baseline_view, evaluate_counts
    from truckcount.detector.label_fixes import read_optional

    def go() -> dict[str, Any]:
        baseline = _read_baseline(against) if against is not None else None
        cfg = load_config(config)
        if weights is not None:
            det = cfg.detector.model_copy(update={"weights": weights})
            cfg = cfg.model_copy(update={"detector": det})
        spec = load_spec(sequences) if sequences is not None else None
        fixes = read_optional(label_fixes)
        report = evaluate_counts(data, cfg, spec, camera_id=camera, fixes=fixes)
        if baseline is not None:
            report["promotion"] = _verdict_view(compare(report, baseline))
        return report

    report = _guard(go)
    if write_baseline is not None:
        view = {k: v for k, v in baseline_view(report).items() if k != "promotion"}
        write_baseline.write_text(json.dumps(view, indent=2) + "\n")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(format_markdown(report) if markdown else format_report(report))
        if "promotion" in report:
            typer.echo("\n".join(report["promotion"]["summary"]))
    if "promotion" in report and not report["promotion"]["promote"]:
        raise typer.Exit(1)


def _read_baseline(path: Path) -> dict[str, Any]:
    try:
        baseline = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read baseline {path}: {exc}") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("counts"), list):
        raise ValueError(f"{path} is not a count report (written by --write-baseline)")
    return baseline


def _verdict_view(verdict: Verdict) -> dict[str, Any]:
    return {
        "promote": verdict.promote,
        "class": verdict.vehicle,
        "baseline_abs_error": verdict.baseline_total,
        "abs_error": verdict.candidate_total,
        "baseline_event_errors": verdict.baseline_events if verdict.by_events else None,
        "event_errors": verdict.candidate_events if verdict.by_events else None,
        "worse_cells": [asdict(c) for c in verdict.cells if c.regressed],
        "summary": verdict.lines(),
    }


def register(eval_app: typer.Typer) -> None:
    """Add ``counts`` to the ``truckcount eval`` command group."""
    eval_app.command("counts")(eval_counts)
