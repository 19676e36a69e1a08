"""Add or edit one asset: AssetFormModal(ctx, asset_or_None) saves through core.services.inventory and dismisses
with the saved asset."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.validation import Function
from textual.widgets import Checkbox, Input, Label, Select

from core.context import Context
from core.drivers.dbconn import TLS_MODES, default_port, is_database
from core.importer import check_name
from core.values import PLATFORMS
from core.services import inventory as svc
from core.types import AssetInfo
from tui.modals.form import FormModal
from tui.widgets.compact import make_compact
from tui.widgets.marked import MarkedCheckbox
from tui.widgets.validators import CoreCheck


FIELDS = ("name", "address", "port", "nodes", "comment", "database", "tls", "ca_file", "gateway")  # each has its own error line


class AssetFormModal(FormModal[AssetInfo | None]):
    """Name, address, port, platform, database options (database platforms only), nodes, active and comment."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, ctx: Context, asset: AssetInfo | None) -> None:
        super().__init__()
        self.ctx = ctx
        self.asset = asset

    def compose(self) -> ComposeResult:
        a = self.asset
        with Vertical(classes="dialog form"):
            yield Label(markup=False, content=f"Edit asset {a.name}" if a else "New asset", classes="dialog-title")
            with VerticalScroll(id="form-body"):
                for key, title, widget in (
                    ("name", "Name", Input(a.name if a else "", id="name", disabled=a is not None,
                                           validators=[CoreCheck(lambda v: check_name(v, "name"))])),
                    ("address", "Address (host name or IP)", Input(a.address if a else "", id="address",
                                                                   validators=[CoreCheck(lambda v: check_name(v, "address"))])),
                    ("port", "SSH port", Input(str(a.port if a else 22), id="port", type="integer",
                                               validators=[CoreCheck(svc.parse_port)])),
                    ("platform", "Platform", Select([(p, p) for p in PLATFORMS], value=a.platform if a else "linux",
                                                    allow_blank=False, id="platform")),
                    ("database", "Database (postgresql: default postgres; redis: a number)",
                     Input(a.database if a else "", id="database")),
                    ("tls", "TLS", Select([(m, m) for m in TLS_MODES], value=(a.tls if a and a.tls else "disable"),
                                          allow_blank=False, id="tls")),
                    ("ca_file", "CA file (absolute path; TLS require or verify-full)",
                     Input(a.ca_file if a else "", id="ca_file", placeholder="/etc/ssl/db-ca.pem")),
                    ("gateway", "Gateway (a trusted linux/unix/aix asset to tunnel through; empty: direct)",
                     Input(a.gateway if a else "", id="gateway", placeholder="jump-01")),
                    ("nodes", "Nodes (paths, comma separated; edits add nodes)" if a else "Nodes (paths, comma separated)",
                     Input(", ".join(a.nodes) if a else "", id="nodes", placeholder="/prod/web",
                           validators=[CoreCheck(svc.parse_nodes)])),
                    ("comment", "Comment", Input(a.comment if a else "", id="comment",
                                                 validators=[Function(lambda v: "\n" not in v)])),
                ):
                    yield self.field_group(key, title, widget)
                yield MarkedCheckbox("active", a.active if a else True, id="active")
            yield Label("", markup=False, id="err-form", classes="field-error")
            yield self.buttons()

    def on_mount(self) -> None:
        """Compact fields, focus the first editable one."""
        make_compact(self)
        self._platform = str(self.query_one("#platform", Select).value)
        self._show_database_fields(self._platform)
        self.query_one("#address" if self.asset else "#name", Input).focus()
        self._initial = self._snapshot()

    def _show_database_fields(self, platform: str) -> None:
        """Database connection fields only for database platforms; the port's title says which port."""
        db = is_database(platform)
        for key in ("database", "tls", "ca_file", "gateway"):
            self.query_one(f"#f-{key}").display = db
        self.query_one("#f-port .field-title", Label).update("Port" if db else "SSH port")

    def on_select_changed(self, event: Select.Changed) -> None:
        """A new platform shows its fields, and moves a port still at the old platform's default to the new one's."""
        if event.select.id != "platform" or not hasattr(self, "_platform"):
            return
        platform = str(event.value)
        port = self.query_one("#port", Input)
        if port.value.strip() == str(default_port(self._platform)):
            port.value = str(default_port(platform))
        self._platform = platform
        self._show_database_fields(platform)

    def on_input_changed(self, event: Input.Changed) -> None:
        """Each field shows its own error as the user types."""
        self.show_typing_error(event)

    def action_save(self) -> None:
        """Check all fields, then write the asset in one transaction (in a thread worker)."""
        if self.saving:
            return
        bad: list[Input] = []
        for field in self.query(Input):
            if not self.show_check(self.field_key(field), field.validate(field.value)):
                bad.append(field)
        if bad:
            self.show_error("form", "fix the fields above; nothing saved")
            self._focus_field(bad[0])
            return
        value = {w.id: w.value.strip() for w in self.query(Input)}
        platform = str(self.query_one("#platform", Select).value)
        db: dict[str, object] = {}
        if is_database(platform):
            db = dict(database=value["database"], tls=str(self.query_one("#tls", Select).value), ca_file=value["ca_file"],
                      gateway=value["gateway"])  # empty: no gateway (an edit removes one)
        fields = dict(address=value["address"], port=value["port"], platform=platform,
                      active=self.query_one("#active", Checkbox).value, comment=value["comment"], **db)
        ctx, asset = self.ctx, self.asset

        # A step-up (StepUpRequired) comes from a new address, port, platform, TLS mode or gateway: they decide
        # where secrets go. save_failed asks for the code and saves again.
        def write() -> AssetInfo:
            if asset is None:
                return svc.add_asset(ctx, value["name"], nodes=svc.parse_nodes(value["nodes"]), **fields)  # type: ignore[arg-type]
            return svc.edit_asset(ctx, asset.name, add_nodes=svc.parse_nodes(value["nodes"]), **fields)[0]  # type: ignore[arg-type]

        self.save_in_thread(f"Saving asset {asset.name if asset else value['name']}", write, self.dismiss)

    def field_failed(self, exc: Exception) -> None:
        """Core's error on its field's line, with the focus on that field."""
        key = getattr(exc, "field", None)
        key = key if key in FIELDS else "form"
        self.show_error(key, str(exc))
        if key != "form" and self.query(f"#{key}").filter("Input"):
            self._focus_field(self.query_one(f"#{key}", Input))

    def _snapshot(self) -> tuple:
        return (tuple(w.value for w in self.query(Input)), self.query_one("#platform", Select).value,
                self.query_one("#tls", Select).value, self.query_one("#active", Checkbox).value)
