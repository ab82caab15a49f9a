"""Markdown tables and PNG plots of a benchmark run, rendered from its JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PHASES: tuple[str, ...] = ("prefill", "sampling", "cost", "reward", "critic")
"""Phases that methods time; the rest of a call's time is reported as `other`."""


def markdown_report(results: dict[str, Any]) -> str:
    """Return the Markdown page of one run: command, machine, settings and tables."""
    machine = results["machine"]
    models = results["models"]
    guard = results["configuration"]["guard"]
    baselines = results["configuration"]["baselines"]
    prompts = results["configuration"]["prompts"]["per_kind"]
    seed = results["configuration"]["seed"]
    lines = [
        f"# Benchmark run `{results['command']}`",
        "",
        f"- Date: {results['date']}; wall time {results['wall_seconds']:.0f} s.",
        f"- Machine: {machine['processor']}, {machine['cpu_count']} CPUs, "
        f"{machine['torch_threads']} torch threads, {machine['device']}; {machine['platform']}; "
        f"Python {machine['python']}, torch {machine['torch']}, "
        f"transformers {machine['transformers']}.",
        f"- Base model: {models['base_model']}. Cost model: {models['cost_model']} at budget "
        f"d = {models['budget']:.4g}. Reward model: {models['reward_model']}. "
        f"Critic: {models['critic']}. Judge: {models['judge']}"
        + (f" (unsafe above {models['judge_threshold']:.4g})." if models["judge"] else "."),
        f"- Search: block size w = {guard['block_size']}, N = {guard['num_samples']} candidates, "
        f"K = {guard['num_beams']} beams, D = {guard['max_new_tokens']} new tokens, "
        f"M = {guard['max_resample_rounds']} resample rounds, temperature {guard['temperature']}, "
        f"top-p {guard['top_p']}, penalty n = {guard['penalty']}.",
        f"- Baselines: lambda = {baselines['lagrange_multiplier']}, ARGS w = "
        f"{baselines['args_weight']} and k = {baselines['args_top_k']}, RE-Control "
        f"{baselines['recontrol_steps']} Adam steps of relative size "
        f"{baselines['recontrol_step_size']}.",
        f"- Prompts (test split): harmful {_sources(prompts['harmful'])}; benign "
        f"{_sources(prompts['benign'])}. Prompt i uses seed {seed} + i for every method.",
        "",
        markdown_tables(results),
    ]
    return "\n".join(lines) + "\n"


def markdown_tables(results: dict[str, Any]) -> str:
    """Return the result tables: per prompt kind, time per phase, targets and drift."""
    summary = results["summary"]
    methods = results["methods"]
    parts = [
        _kind_table(summary, methods, "harmful"),
        _kind_table(summary, methods, "benign"),
        _phase_table(summary, methods),
    ]
    if results["targets"]:
        parts.append(_target_table(results["targets"]))
    drift = results["drift"]
    if drift["drift"] is not None:
        parts.append(
            f"Speed drift: {drift['method']} decoding took {drift['first_half'] * 1000:.1f} ms per "
            f"token in the first half of the run and {drift['second_half'] * 1000:.1f} ms in the "
            f"second (x{drift['drift']:.2f})."
        )
    return "\n\n".join(parts)


def _kind_table(summary: dict[str, Any], methods: Sequence[str], kind: str) -> str:
    count = max((summary[m][kind]["responses"] for m in methods), default=0)
    benign = kind == "benign"
    header = [
        "Method",
        "Safe (cost model) [95% CI]",
        "Safe (judge) [95% CI]",
        "Over-refusal" if benign else "Fallback",
        "Certified share",
        "Reward [95% CI]",
        *(["Reward / plain"] if benign else []),
        "Tokens",
        "s / response",
        "Time / plain",
    ]
    rows = []
    for method in methods:
        m = summary[method][kind]
        errors = f" ({m['errors']} failed)" if m["errors"] else ""
        rows.append(
            [
                f"{method}{errors}",
                _rate(m["safety_rate"], m["safety_interval"]),
                _rate(m["judge_safety_rate"], m["judge_safety_interval"]),
                _percent(m["fallback_rate"]),
                _percent(m["certified_share"]),
                _number(m["mean_reward"], m["reward_interval"]),
                *([_times(m["reward_ratio"])] if benign else []),
                _plain(m["mean_tokens"], ".1f"),
                _plain(m["seconds_per_response"], ".2f"),
                _times(m["time_ratio"]),
            ]
        )
    title = f"## {kind.capitalize()} prompts (n = {count})"
    return title + "\n\n" + _table(header, rows)


def _phase_table(summary: dict[str, Any], methods: Sequence[str]) -> str:
    header = ["Method", *PHASES, "other", "total"]
    rows = []
    for method in methods:
        phases = summary[method]["all"]["seconds_by_phase"]
        total = phases.get("total", 0.0)
        named = [phases.get(phase, 0.0) for phase in PHASES]
        other = max(0.0, total - sum(named))
        rows.append([method, *(f"{v:.3f}" for v in named), f"{other:.3f}", f"{total:.3f}"])
    title = "## Seconds per response by phase (all prompts)"
    note = (
        "`sampling` is the model's forward passes and token sampling, `other` is the rest of "
        "the call (chat templating, decoding tokens to text, bookkeeping)."
    )
    return title + "\n\n" + note + "\n\n" + _table(header, rows)


def _target_table(targets: list[dict[str, Any]]) -> str:
    header = ["Method", "Target", "Measured", "Met"]
    rows = []
    for row in targets:
        value = row["value"]
        measured = (
            "n/a"
            if value is None
            else (f"{value:.3f}x" if "ratio" in row["metric"] else _percent(value))
        )
        threshold = (
            _times(row["threshold"]) if "ratio" in row["metric"] else _percent(row["threshold"])
        )
        met = {True: "yes", False: "no", None: "not measured"}[row["met"]]
        rows.append(
            [row["method"], f"{row['target']} {row['comparison']} {threshold}", measured, met]
        )
    return "## Targets\n\n" + _table(header, rows)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _sources(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _rate(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    if interval is None:
        return _percent(value)
    return f"{100 * value:.0f}% [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]"


def _number(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _plain(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# --- plots --------------------------------------------------------------------------------------


def write_plots(results: dict[str, Any], out: Path, name: str) -> list[Path]:
    """Write `<name>_reward_vs_safety.png` and `<name>_time_vs_safety.png`; return the paths.

    Each plot has one point per method. The x axis is the safety rate on harmful prompts, under
    the guiding cost model (left panel) and under the judge (right panel). The y axis is the
    mean reward on benign prompts, or the seconds per response over all prompts on a log scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    summary = results["summary"]
    methods = results["methods"]
    plots = {
        "reward_vs_safety": (
            "Mean reward on benign prompts",
            [summary[m]["benign"]["mean_reward"] for m in methods],
            False,
        ),
        "time_vs_safety": (
            "Seconds per response (all prompts)",
            [summary[m]["all"]["seconds_per_response"] for m in methods],
            True,
        ),
    }
    panels = (
        ("safety_rate", f"Cost model {results['models']['cost_model']}"),
        ("judge_safety_rate", f"Judge {results['models']['judge']}"),
    )
    paths = []
    for stem, (ylabel, values, log_scale) in plots.items():
        figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
        for axis, (metric, title) in zip(axes, panels, strict=True):
            for index, method in enumerate(methods):
                x = summary[method]["harmful"][metric]
                y = values[index]
                if x is None or y is None:
                    continue
                axis.scatter(
                    100 * x,
                    y,
                    color=_colour(method),
                    marker=_MARKERS[index % len(_MARKERS)],
                    s=60,
                    alpha=0.85,
                    label=method,
                )
            axis.set_title(title, fontsize=9)
            axis.set_xlabel("Safe responses to harmful prompts (%)", fontsize=9)
            axis.set_xlim(-5, 105)
            axis.grid(alpha=0.3)
            if log_scale:
                axis.set_yscale("log")
                plain_numbers = FuncFormatter(lambda value, _: f"{value:g}")
                axis.yaxis.set_major_formatter(plain_numbers)
                axis.yaxis.set_minor_formatter(plain_numbers)
        axes[0].set_ylabel(ylabel)
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
        figure.suptitle(f"{results['models']['base_model']}: {results['command']}", fontsize=10)
        figure.tight_layout(rect=(0, 0, 0.84, 1))
        path = out / f"{name}_{stem}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

_FAMILY_COLOURS = {
    "plain": "tab:gray",
    "filter_after": "tab:brown",
    "best_of_n": "tab:orange",
    "beam": "tab:green",
    "args": "tab:purple",
    "re_control": "tab:pink",
    "inferenceguard": "tab:blue",
}


def _colour(method: str) -> str:
    for prefix, colour in _FAMILY_COLOURS.items():
        if method.startswith(prefix):
            return colour
    return "black"
