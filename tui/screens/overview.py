"""Overview mode: how many tasks and assets, how executions went lately, and the accounts that need a look."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Sparkline, Static

from core.listings import attention_accounts, overview_stats
from core.services.views import AttentionRow, OverviewStats
from tui.screens.base import ModeScreen
from tui.widgets.format import clip, status_text, when, show_text
from tui.widgets.table import PlainTable

ATTENTION_LIMIT = 200


class OverviewScreen(ModeScreen):
    """Numbers, a 30-day chart of changes, and failed or unverified accounts (newest 200)."""

    MODE = "overview"
    BINDINGS = [
        Binding("v", "reveal", "Reveal old/new"),
        Binding("f5", "reload", "Refresh"),
        Binding("d", "day_range", "7/30/90 days"),
    ]
    DAY_RANGES = (7, 30, 90)
    day_range = 30

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="overview-top"):
            yield Static(id="overview-stats")
            with Vertical(id="overview-chart"):
                yield Label("Changes per day, last 30 days", classes="section-title", id="chart-title")
                with Horizontal(classes="spark-row"):
                    yield Label("ok  ", classes="spark-label ok")
                    yield Sparkline([], id="spark-success")
                with Horizontal(classes="spark-row"):
                    yield Label("bad ", classes="spark-label bad")
                    yield Sparkline([], id="spark-failed")
                yield Label("", markup=False, id="spark-range", classes="dim")
        yield Label("Needs attention: failed or unverified accounts (newest 200)", classes="section-title")
        table: DataTable = PlainTable(id="attention-table", cursor_type="row", zebra_stripes=True)
        table.add_column("asset", key="asset")
        table.add_column("account", key="account")
        table.add_column("status", key="status")
        table.add_column("when", key="when")
        table.add_column("task", key="task")
        table.add_column("reason", key="reason")
        yield table

    def reload(self) -> None:
        """Query the aggregates and the attention list, each in its own thread worker (they run side by side)."""
        ctx, now, days = self.ctx, self.now(), self.day_range

        def stats() -> tuple[OverviewStats, int]:
            from core.heartbeat import drifted

            return overview_stats(ctx, now, days=days), len(drifted(ctx))

        self.read_in_thread("overview-stats", stats, self._show_stats, name="Loading the overview")
        self.read_in_thread("overview-attention", lambda: attention_accounts(ctx, limit=ATTENTION_LIMIT),
                            self._show_attention, name="Loading accounts that need attention")

    def _show_stats(self, data: tuple[OverviewStats, int]) -> None:
        stats, drift = data
        text = Text()
        text.append("Tasks        ", style="dim").append(f"{stats.tasks}", style="bold")
        text.append(f"  ({stats.periodic_tasks} periodic, {stats.active_tasks} active)\n")
        text.append("Assets       ", style="dim").append(f"{stats.assets_covered}", style="bold")
        text.append(f" covered of {stats.assets}\n")
        text.append("Accounts     ", style="dim").append(f"{stats.accounts}\n", style="bold")
        text.append("Runs 7 days  ", style="dim").append(f"{stats.exec_7d_success} ok", style="green")
        text.append(" / ").append(f"{stats.exec_7d_failed} failed\n", style="red")
        text.append("Runs 30 days ", style="dim").append(f"{stats.exec_30d_success} ok", style="green")
        text.append(" / ").append(f"{stats.exec_30d_failed} failed\n", style="red")
        text.append("Drift        ", style="dim").append(f"{drift}", style="bold red" if drift else "bold")
        text.append(" heartbeat not ok\n")
        text.append("Running now  ", style="dim").append(f"{stats.running}", style="bold cyan" if stats.running else "bold")
        show_text(self.query_one("#overview-stats", Static), text)
        self.query_one("#spark-success", Sparkline).data = [d.success for d in stats.days]
        self.query_one("#spark-failed", Sparkline).data = [d.failed for d in stats.days]
        total_ok = sum(d.success for d in stats.days)
        total_bad = sum(d.failed for d in stats.days)
        show_text(self.query_one("#spark-range", Label),
            f"{stats.days[0].day} .. {stats.days[-1].day}: {total_ok} ok, {total_bad} failed/unverified")
        show_text(self.query_one("#chart-title", Label), f"Changes per day, last {len(stats.days)} days")

    def _show_attention(self, rows: list[AttentionRow]) -> None:
        now = self.now()
        table = self.query_one("#attention-table", PlainTable)
        keep = table.cursor_row
        table.show_rows((str(row.record_id), (row.asset_name, row.username, status_text(row.status),
                                              when(row.created_at, now), row.task_name, clip(row.error, 60)))
                        for row in rows)
        if rows:
            table.move_cursor(row=min(max(keep, 0), len(rows) - 1))

    def action_day_range(self) -> None:
        """Switch the chart between the last 7, 30 and 90 days."""
        ranges = self.DAY_RANGES
        self.day_range = ranges[(ranges.index(self.day_range) + 1) % len(ranges)]
        self.reload()

    def action_reload(self) -> None:
        """Load again now."""
        self.reload()

    def action_reveal(self) -> None:
        """Show the old and new secret of the highlighted account's newest change (after a TOTP check)."""
        table = self.query_one("#attention-table", DataTable)
        if not table.row_count:
            self.notify("No account selected", severity="warning")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.kt.reveal_record(int(key), "both")
