"""The ticks flow's Markdown reports: ``performance_report.md`` of one universe and over all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.analyses import necrozma
from pipeline.engine.series import markdown_table
from pipeline.kinds import ticks

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.analyses.base import Consolidated
    from pipeline.flows.ticks import TicksRun


def _top(patterns: pa.Table, columns: list[str], count: int = 10) -> str:
    columns = [c for c in columns if c in patterns.schema.names]
    rows = patterns.select(columns).slice(0, count).to_pylist()
    return markdown_table(columns, [[_fmt(row[c]) for c in columns] for row in rows])


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def universe_report(run: TicksRun, summary: dict[str, Any], consolidated: Consolidated) -> str:
    """``performance_report.md`` of one universe."""
    analysis, consolidation = summary["stages"]["analysis"], summary["stages"]["consolidation"]
    rows = summary.get("rows") or {}
    return (
        f"# {summary['universe']}: {summary['interval_minutes']}-minute candles, lookback {summary['lookback']}, "
        f"analysis {summary['analysis']}\n\n"
        + markdown_table(["ticks", "chunks", "result rows", "train", "val", "test", "patterns"],
                         [[summary["ticks"], len(summary["chunks"]), summary["result_rows"], rows.get("train", ""),
                           rows.get("val", ""), rows.get("test", ""), summary["patterns_seen"]]])
        + (f"\n{consolidated.report}" if consolidated.report else "")
        + "\n## Time and memory\n\n"
        + markdown_table(["stage", "tasks", "task seconds", "peak RSS MiB"],
                         [["chunk × universe", analysis["tasks"], analysis["task_seconds"], analysis["peak_rss_mb"]],
                          ["consolidation", 1, consolidation["seconds"], consolidation["peak_rss_mb"]]])
        + f"\n## Top patterns\n\n{_top(consolidated.patterns, [*run.analysis.top_columns, 'rank'])}")


def overall_report(run: TicksRun, metadata: dict[str, Any], summaries: list[dict], ranked: pa.Table,
                   chunks: tuple[int, ...], stages: dict[str, dict]) -> str:
    """``performance_report.md`` over all selected universes."""
    tick_rows = metadata["ticks"]
    bad = [[reason, tick_rows[reason]] for reason in ticks.REASONS]
    stage_rows = [[name, s["tasks"], s.get("seconds", s.get("task_seconds")), s.get("wall_seconds", ""),
                   s["peak_rss_mb"]] for name, s in stages.items()]
    universe_rows = [[s["universe"], s["result_rows"], (s.get("rows") or {}).get("train", ""),
                      (s.get("rows") or {}).get("val", ""), (s.get("rows") or {}).get("test", ""),
                      s["patterns_seen"]] for s in summaries]
    ranking = ""
    if run.analysis.name == "necrozma":
        ranking = "\n## Universe ranking (upstream's score)\n\n" + markdown_table(
            ["rank", "universe", "targets", "signatures seen 3+ times", "dfa_mean", "score"],
            [[i, r["name"], r["total_patterns"], r["high_conf_patterns"], _fmt(r["dfa_mean"]), _fmt(r["score"])]
             for i, r in enumerate(necrozma.rankings(summaries), start=1)])
    return (
        f"# {run.recipe.name}: tick patterns (analysis {run.analysis.name})\n\n"
        + markdown_table(["ticks read", "ticks kept", "bad ticks", "chunks", "chunk size", "universes"],
                         [[tick_rows["read"], tick_rows["kept"], tick_rows["bad"], len(chunks),
                           metadata["chunk_size"], len(summaries)]])
        + "\n## Bad ticks\n\n" + markdown_table(["reason", "ticks"], bad)
        + "\n## Time and memory per stage\n\n"
        + markdown_table(["stage", "tasks", "seconds (summed over tasks)", "wall seconds", "peak RSS MiB"], stage_rows)
        + "\n## Universes\n\n"
        + markdown_table(["universe", "result rows", "train", "val", "test", "patterns"], universe_rows)
        + ranking
        + f"\n## Top patterns overall\n\n{_top(ranked, ['universe', *run.analysis.top_columns, 'global_rank'])}")
