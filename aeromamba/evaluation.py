"""Scoring systems against references, the statistics of the paper's tables, and the reports.

One documented way to compute every number:
- signals are mono (channels averaged) at the reference's rate (44.1 kHz); an estimate at
  another rate is an error for that item, not silently resampled; lengths may differ by at
  most `MAX_LENGTH_MISMATCH` samples (resampler rounding) and are then cut to the shorter;
- per item and metric, a failure is recorded with its reason and counted in `failed`; it is
  never replaced by a number and never averaged in;
- a system's mean comes with a 95% confidence interval (Student t, n − 1 degrees of freedom);
- systems are compared pairwise per metric with the two-sided Mann–Whitney U test.
Metric names: `lsd`, `lsd_hf`, `lsd_lf` (lower is better), `visqol` (higher is better),
`paqm` (raw P, lower is better). Whatever the metrics, every item also gets the generated band's
level error and envelope spread ratio (`aeromamba.metrics.band_level.KEYS`: `level_5_8` ...
`spread_16_20`), summarised like the metrics in their own table and, in the HTML report, a bar
plot per table; where the reference's band is silent they are undefined and left out (neither
a value nor a failure).
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from aeromamba.files import atomic_path

METRICS = ("lsd", "lsd_hf", "lsd_lf", "visqol", "paqm")
LOWER_IS_BETTER = {"lsd": True, "lsd_hf": True, "lsd_lf": True, "visqol": False, "paqm": True}
MAX_LENGTH_MISMATCH = 64
LOWRES = "low resolution"

#: names -> f(estimate, reference, item name) -> {name: value}; a name missing from the answer
#: is undefined for that item.
Scorer = Callable[[np.ndarray, np.ndarray, str], dict[str, float]]


@dataclass
class ItemResult:
    """The scores of one system on one item; `errors` maps a metric to why it failed."""

    system: str
    item: str
    scores: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    group: str = ""  # the kind of material (e.g. piano), reported apart when there are several


def align(estimate: np.ndarray, reference: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mono 1-D float64 pair of equal length; raises ValueError naming `name` otherwise."""
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    est = est.mean(axis=0) if est.ndim == 2 else est
    ref = ref.mean(axis=0) if ref.ndim == 2 else ref
    if abs(len(est) - len(ref)) > MAX_LENGTH_MISMATCH:
        raise ValueError(
            f"{name}: estimate has {len(est)} samples, reference {len(ref)} "
            f"(more than {MAX_LENGTH_MISMATCH} apart)"
        )
    n = min(len(est), len(ref))
    return est[:n], ref[:n]


def columns(metrics: Sequence[str]) -> list[str]:
    """Every score name an evaluation with `metrics` records: the metrics, then the band level."""
    from aeromamba.metrics.band_level import KEYS

    return [*metrics, *KEYS]


def band_label(key: str) -> str:
    """The table heading of a band-level key: 'level 8–12 kHz (dB)', 'spread 8–12 kHz'."""
    from aeromamba.metrics.band_level import BAND_LABELS

    kind, band = key.split("_", 1)
    return f"{kind} {BAND_LABELS[band]}" + (" (dB)" if kind == "level" else "")


def metric_functions(metrics: Sequence[str], sr: int) -> dict[tuple[str, ...], Scorer]:
    """The scorers of the requested metrics at rate `sr` (one for all LSD bands, one STFT) and
    of the band level, keyed by the names each returns."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    functions: dict[tuple[str, ...], Scorer] = {}
    lsd_names = tuple(m for m in metrics if m.startswith("lsd"))
    if lsd_names:
        from aeromamba.metrics.lsd import lsd_bands

        names = {"lsd": "full", "lsd_hf": "high", "lsd_lf": "low"}
        bands = tuple(names[m] for m in lsd_names)
        functions[lsd_names] = lambda e, r, _n: {
            k: float(v) for k, v in lsd_bands(e, r, sr=sr, bands=bands).items()
        }
    if "visqol" in metrics:
        from aeromamba.metrics.visqol import visqol

        functions[("visqol",)] = lambda e, r, _n: {"visqol": float(visqol(e, r, sr))}
    if "paqm" in metrics:
        from aeromamba.metrics.paqm import paqm

        functions[("paqm",)] = lambda e, r, n: {"paqm": float(paqm(e, r, sr=sr, name=n))}
    from aeromamba.metrics.band_level import KEYS, band_level

    def band(e: np.ndarray, r: np.ndarray, _n: str) -> dict[str, float]:
        return {k: v for k, v in band_level(e, r, sr).items() if math.isfinite(v)}

    functions[KEYS] = band
    return functions


def score_item(
    system: str,
    item: str,
    estimate: np.ndarray,
    reference: np.ndarray,
    functions: dict[tuple[str, ...], Scorer],
) -> ItemResult:
    """Score one estimate; every failure is kept with its reason."""
    result = ItemResult(system, item)
    try:
        est, ref = align(estimate, reference, f"{system}/{item}")
    except ValueError as err:
        result.errors = {metric: str(err) for names in functions for metric in names}
        return result
    for names, fn in functions.items():
        try:
            values = fn(est, ref, f"{system}/{item}")
            for metric, value in values.items():
                if not math.isfinite(value):
                    raise ValueError(f"{metric} is {value}")
            result.scores.update(values)
        except Exception as err:  # any metric failure is reported per item
            result.errors.update(dict.fromkeys(names, f"{type(err).__name__}: {err}"))
    return result


def failed_item(system: str, item: str, reason: str, metrics: Iterable[str]) -> ItemResult:
    """An item a system has no usable output for (missing or unreadable file)."""
    return ItemResult(system, item, errors={metric: reason for metric in metrics})


def summarize(results: Sequence[ItemResult], metrics: Sequence[str]) -> dict[str, Any]:
    """system → metric → {"mean", "ci95", "n", "failed"} (None where nothing was measured)."""
    summary: dict[str, Any] = {}
    for system in dict.fromkeys(r.system for r in results):
        rows = [r for r in results if r.system == system]
        summary[system] = {}
        for metric in metrics:
            values = np.array([r.scores[metric] for r in rows if metric in r.scores])
            failed = sum(metric in r.errors for r in rows)
            mean = float(values.mean()) if len(values) else None
            ci95 = None
            if len(values) > 1:
                sem = values.std(ddof=1) / math.sqrt(len(values))
                ci95 = float(stats.t.ppf(0.975, len(values) - 1) * sem)
            summary[system][metric] = {
                "mean": mean,
                "ci95": ci95,
                "n": len(values),
                "failed": failed,
            }
    return summary


def pairwise_tests(results: Sequence[ItemResult], metrics: Sequence[str]) -> dict[str, Any]:
    """metric → "A vs B" → two-sided Mann–Whitney U p-value (None with < 1 value a side)."""
    systems = list(dict.fromkeys(r.system for r in results))
    tests: dict[str, Any] = {}
    for metric in metrics:
        tests[metric] = {}
        for a, b in combinations(systems, 2):
            xa = [r.scores[metric] for r in results if r.system == a and metric in r.scores]
            xb = [r.scores[metric] for r in results if r.system == b and metric in r.scores]
            p = None
            if xa and xb:
                p = float(stats.mannwhitneyu(xa, xb, alternative="two-sided").pvalue)
            tests[metric][f"{a} vs {b}"] = p
    return tests


def _fmt(entry: dict[str, Any], digits: int = 3) -> str:
    if entry["mean"] is None:
        return "—"
    ci = f" ± {entry['ci95']:.{digits}f}" if entry["ci95"] is not None else ""
    return f"{entry['mean']:.{digits}f}{ci}"


def _table(summary: dict[str, Any], headings: Mapping[str, str], digits: int) -> list[list[str]]:
    """Heading row, then per system: name, mean ± 95% CI of each column, n and failures."""
    rows = [["system", *headings.values(), "n", "failed"]]
    for system, row in summary.items():
        n = max(row[k]["n"] for k in headings)
        failed = sum(row[k]["failed"] for k in headings)
        rows.append([system, *(_fmt(row[k], digits) for k in headings), str(n), str(failed)])
    return rows


def _metric_headings(metrics: Sequence[str]) -> dict[str, str]:
    arrows = {m: "↓" if LOWER_IS_BETTER[m] else "↑" for m in metrics}
    return {m: f"{m.upper().replace('_', '-')} {arrows[m]}" for m in metrics}


def _band_headings(summary: dict[str, Any]) -> dict[str, str]:
    """The band-level columns the summary holds (none for a summary of metrics only)."""
    from aeromamba.metrics.band_level import KEYS

    first = next(iter(summary.values()), {})
    return {k: band_label(k) for k in KEYS if k in first}


METRICS_NOTE = (
    "Mean ± 95% confidence interval (Student t). PAQM is the raw P "
    "(lower is better); ViSQOL is MOS-LQO in audio mode at 48 kHz."
)
BAND_NOTE = (
    "Generated band, output against reference (mean ± 95% CI over items): level error in dB "
    "(long-term power; 0 is right, below 0 too dull) and envelope spread (std over frames of "
    "the band level, output / reference; 1 is right, below 1 flattened). Items whose "
    "reference band is silent are left out of that band."
)


def _markdown_table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]


def markdown_summary(summary: dict[str, Any], tests: dict[str, Any], metrics: Sequence[str]) -> str:
    """The summary table (mean ± 95% CI, n, failures), the p-value tables and, when the summary
    holds them, the generated band's level table, in Markdown."""
    lines = [*_markdown_table(_table(summary, _metric_headings(metrics), 3)), "", METRICS_NOTE, ""]
    if any(tests[m] for m in metrics):
        lines += [
            "Pairwise two-sided Mann–Whitney U p-values:",
            "",
            "| pair | " + " | ".join(metrics) + " |",
            "|" + " --- |" * (len(metrics) + 1),
        ]
        for pair in next(iter(tests.values())):
            cells = " | ".join(
                "—" if tests[m][pair] is None else f"{tests[m][pair]:.2g}" for m in metrics
            )
            lines.append(f"| {pair} | {cells} |")
        lines.append("")
    bands = _band_headings(summary)
    if bands:
        lines += [*_markdown_table(_table(summary, bands, 2)), "", BAND_NOTE]
    return "\n".join(lines) + "\n"


def failures(results: Sequence[ItemResult]) -> list[str]:
    """One line per failed (system, item, metric)."""
    return [
        f"{r.system} / {r.item} / {metric}: {reason}"
        for r in results
        for metric, reason in r.errors.items()
    ]


def group_summaries(results: Sequence[ItemResult], metrics: Sequence[str]) -> dict[str, Any]:
    """group -> `summarize` of its items (over `metrics`, score names), when the items come from
    several groups; else {}."""
    groups = sorted({r.group for r in results})
    if len(groups) < 2:
        return {}
    return {g: summarize([r for r in results if r.group == g], metrics) for g in groups}


def write_results(
    out: str | os.PathLike, results: Sequence[ItemResult], metrics: Sequence[str]
) -> dict[str, Any]:
    """Write `per_item.csv`, `summary.json` and `summary.md` into `out`; returns the summary
    over all items (the metrics and the band level). When the items come from several groups,
    each group also gets its own tables in `summary.md` and `summary_by_group.json`
    (group -> system -> metric)."""
    out = Path(out)
    names = columns(metrics)
    summary = summarize(results, names)
    tests = pairwise_tests(results, metrics)
    with atomic_path(out / "per_item.csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["system", "item", "group", *names, "errors"])
            for r in results:
                writer.writerow(
                    [
                        r.system,
                        r.item,
                        r.group,
                        *(r.scores.get(m, "") for m in names),
                        "; ".join(f"{m}: {e}" for m, e in r.errors.items()),
                    ]
                )
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    markdown = markdown_summary(summary, tests, metrics)
    by_group = group_summaries(results, names)
    for group, group_summary in by_group.items():
        subset = [r for r in results if r.group == group]
        markdown += f"\n### {group or '(no group)'}\n\n" + markdown_summary(
            group_summary, pairwise_tests(subset, metrics), metrics
        )
    if by_group:
        with atomic_path(out / "summary_by_group.json") as tmp:
            tmp.write_text(json.dumps(by_group, indent=2))
    problems = failures(results)
    if problems:
        markdown += "\nFailures:\n\n" + "\n".join(f"- {p}" for p in problems) + "\n"
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(markdown)
    return summary


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows[1:]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def html_table(summary: dict[str, Any], metrics: Sequence[str]) -> str:
    """A summary (system -> metric -> entry) as an HTML table: mean ± 95% CI, n, failures."""
    return _html_table(_table(summary, _metric_headings(metrics), 3))


def _html_band_level(out: Path, title: str, summary: dict[str, Any]) -> str:
    """The band-level table of a summary and its bar plot (written under out/band_level/)."""
    from aeromamba.plots import plot_band_levels

    bands = _band_headings(summary)
    if not bands:
        return ""
    picture = Path("band_level") / f"{_slug(title) or 'no_group'}.png"
    plot_band_levels(summary, out / picture, title=title)
    return (
        f"<h3>Generated band: {html.escape(title)}</h3>{_html_table(_table(summary, bands, 2))}"
        f'<img src="{picture.as_posix()}" alt="band level and envelope spread">'
    )


def write_html_report(
    out: str | os.PathLike,
    tables: dict[str, dict[str, Any]],
    metrics: Sequence[str],
    items: Sequence[dict[str, Any]],
) -> Path:
    """One static page: the summary tables (title -> summary) with, where a summary holds the
    band level, its table and bar plot; then per item an audio player and a spectrogram for
    each signal. `items`: [{"name", "audio": {label: relpath}, "spectrogram": relpath}] with
    paths relative to `out`."""
    out = Path(out)
    summaries = "".join(
        f"<h2>{html.escape(title)}</h2>{html_table(summary, metrics)}"
        + _html_band_level(out, title, summary)
        for title, summary in tables.items()
    )
    rows = []
    for item in items:
        players = "".join(
            f"<figure><figcaption>{html.escape(label)}</figcaption>"
            f'<audio controls preload="none" src="{html.escape(path)}"></audio></figure>'
            for label, path in item["audio"].items()
        )
        picture = (
            f'<img src="{html.escape(item["spectrogram"])}" alt="spectrograms">'
            if item.get("spectrogram")
            else ""
        )
        rows.append(
            f"<section><h2>{html.escape(item['name'])}</h2>"
            f'<div class="players">{players}</div>{picture}</section>'
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AEROMamba evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
.players {{ display: flex; flex-wrap: wrap; gap: 1em; }} figure {{ margin: 0; }}
img {{ max-width: 100%; }} section {{ border-top: 1px solid #ddd; margin-top: 1.5em; }}
</style></head><body>
<h1>AEROMamba evaluation</h1>
{summaries}
<p>{html.escape(METRICS_NOTE)} Pairwise tests: summary.md.</p>
<p>{html.escape(BAND_NOTE)}</p>
{"".join(rows)}
</body></html>
"""
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page)
    return path


def _find_pair(folder: Path, relative: Path) -> Path | None:
    """`folder/relative`, or a file with the same stem and another audio extension."""
    exact = folder / relative
    if exact.is_file():
        return exact
    from aeromamba.audio import AUDIO_EXTENSIONS

    for ext in AUDIO_EXTENSIONS:
        candidate = (folder / relative).with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


@dataclass
class Evaluation:
    """What an evaluation produced: per-item results, the summary and the files written."""

    results: list[ItemResult]
    summary: dict[str, Any]
    out: Path

    @property
    def failures(self) -> list[str]:
        return failures(self.results)


def evaluate_folders(
    reference: str | os.PathLike,
    estimates: dict[str, str | os.PathLike],
    out: str | os.PathLike,
    lowres: str | os.PathLike | None = None,
    metrics: Sequence[str] = METRICS,
    report: bool = False,
    report_items: int = 20,
    sr: int = 44100,
) -> Evaluation:
    """Score estimate folders (and the soxr-upsampled low-resolution folder) against the
    reference folder, pairing files by relative path; write the results into `out`."""
    from tqdm import tqdm

    from aeromamba.audio import AudioError, list_audio_files, read_audio, resample

    reference = Path(reference)
    references = list_audio_files(reference)
    if not references:
        raise FileNotFoundError(f"{reference}: no audio files")
    systems: dict[str, Path] = {}
    if lowres is not None:
        systems[LOWRES] = Path(lowres)
    systems.update({name: Path(folder) for name, folder in estimates.items()})
    functions = metric_functions(metrics, sr)
    names = columns(metrics)
    results: list[ItemResult] = []
    report_entries: list[dict[str, Any]] = []
    for ref_path in tqdm(references, desc="evaluating", unit="file"):
        relative = ref_path.relative_to(reference) if reference.is_dir() else Path(ref_path.name)
        item = relative.as_posix()
        try:
            ref, ref_sr = read_audio(ref_path)
            if ref_sr != sr:
                raise AudioError(f"{ref_path}: reference at {ref_sr} Hz, expected {sr} Hz")
        except AudioError as err:
            results += [failed_item(s, item, f"reference: {err}", names) for s in systems]
            continue
        signals = {"reference": ref.mean(axis=0)}
        for system, folder in systems.items():
            path = _find_pair(folder, relative)
            if path is None:
                results.append(failed_item(system, item, f"missing in {folder}", names))
                continue
            try:
                audio, rate = read_audio(path)
                if system == LOWRES:
                    audio = resample(audio, rate, sr)
                elif rate != sr:
                    raise AudioError(f"{path}: estimate at {rate} Hz, expected {sr} Hz")
            except AudioError as err:
                results.append(failed_item(system, item, str(err), names))
                continue
            signals[system] = audio.mean(axis=0)
            results.append(score_item(system, item, audio, ref, functions))
        if report and len(report_entries) < report_items:
            report_entries.append(_report_entry(Path(out), item, signals, sr))
    return _finish(out, results, metrics, report_entries if report else None)


def _finish(
    out: str | os.PathLike,
    results: list[ItemResult],
    metrics: Sequence[str],
    report_entries: list[dict[str, Any]] | None,
) -> Evaluation:
    """Write the result files (and the HTML report when entries are given)."""
    summary = write_results(out, results, metrics)
    if report_entries is not None:
        tables = {"all items": summary, **group_summaries(results, columns(metrics))}
        write_html_report(out, tables, metrics, report_entries)
    return Evaluation(results, summary, Path(out))


def _report_entry(out: Path, item: str, signals: dict[str, np.ndarray], sr: int) -> dict:
    """Write an item's audio (16-bit WAV) and spectrogram PNG for the HTML report."""
    from aeromamba.audio import write_audio
    from aeromamba.plots import plot_spectrograms

    stem = Path(item).with_suffix("")
    audio = {}
    for label, signal in signals.items():
        relative = Path("audio") / _slug(label) / stem.with_suffix(".wav")
        write_audio(out / relative, signal[None].astype(np.float32), sr, subtype="PCM_16")
        audio[label] = relative.as_posix()
    picture = Path("spectrograms") / stem.with_suffix(".png")
    plot_spectrograms({k: (v, sr) for k, v in signals.items()}, out / picture, title=item)
    return {"name": item, "audio": audio, "spectrogram": picture.as_posix()}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def evaluate_excerpts(
    excerpts: Sequence[tuple[str, np.ndarray, np.ndarray]],
    systems: dict[str, Callable[[np.ndarray], np.ndarray]],
    out: str | os.PathLike,
    metrics: Sequence[str] = METRICS,
    report: bool = False,
    report_items: int = 20,
    lr_sr: int = 11025,
    sr: int = 44100,
    groups: Mapping[str, str] | None = None,
) -> Evaluation:
    """Score systems on (name, low-res (L,), reference (4L,)) excerpts; the low-resolution
    baseline (soxr VHQ upsampling of the input) is always the first row.

    `systems` maps a name to a function from the low-resolution excerpt to a 44.1 kHz one;
    `groups` an excerpt name to its group (kind of material), reported apart.
    """
    from tqdm import tqdm

    from aeromamba.audio import resample

    functions = metric_functions(metrics, sr)
    names = columns(metrics)
    everything = {LOWRES: lambda lr: resample(lr[None], lr_sr, sr)[0], **systems}
    results: list[ItemResult] = []
    report_entries: list[dict[str, Any]] = []
    for name, lr, hr in tqdm(excerpts, desc="evaluating", unit="excerpt"):
        signals = {"reference": hr}
        for system, upsample in everything.items():
            try:
                estimate = upsample(lr)
            except Exception as err:  # a failing system is reported per item
                results.append(failed_item(system, name, f"{type(err).__name__}: {err}", names))
                continue
            signals[system] = estimate
            results.append(score_item(system, name, estimate, hr, functions))
        for result in results[-len(everything) :]:
            result.group = (groups or {}).get(name, "")
        if report and len(report_entries) < report_items:
            report_entries.append(_report_entry(Path(out), name, signals, sr))
    return _finish(out, results, metrics, report_entries if report else None)
