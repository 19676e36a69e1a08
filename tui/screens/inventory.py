"""Inventory mode: the node tree beside a paged asset table, the selected asset's accounts below.

Keys add, edit and remove assets and their accounts, import an inventory file, and pin a host key after showing
its fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, Tree

from core.importer import describe_summary
from core.services import inventory as svc
from core.stepup import StepUpRequired
from core.types import AccountInfo, AssetInfo, NodeInfo
from tui.modals.account_form import AccountFormModal
from tui.modals.asset_form import AssetFormModal
from tui.modals.confirm import ConfirmModal
from tui.modals.prompt import PromptModal
from tui.screens.base import ModeScreen, page_bindings
from tui.widgets.format import plural, ago, status_text, show_text
from tui.widgets.table import PlainTable

PAGE = 100  # about three screens at 120x40: the UI thread measures and draws every row a table holds


class InventoryScreen(ModeScreen):
    """Nodes, assets and accounts."""

    MODE = "inventory"
    # The table has the focus from the start (focusing the first field, then the table, restyled both).
    AUTO_FOCUS = "#assets-table"
    PAGED_TABLE = "assets-table"
    BINDINGS = [
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("f", "import_file", "Import"),
        Binding("k", "trust", "Trust"),
        Binding("slash", "focus_search", "Search"),
        Binding("D", "toggle_drift", "Drifted only", show=False),
        *page_bindings(),
        Binding("d", "remove", "Remove asset", show=False),
        Binding("v", "reveal", "Reveal secret", show=False),
        Binding("a", "add_account", "Add account", show=False),
        Binding("c", "edit_account", "Edit account", show=False),
        Binding("x", "remove_account", "Remove account", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.node: str | None = None
        self.page_offset = 0
        self.total = 0
        self.drift_only = False  # D: only assets holding an account whose newest heartbeat is not ok
        self._assets: dict[str, AssetInfo] = {}

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="inventory-body"):
            tree: Tree[str | None] = Tree("all assets", data=None, id="node-tree")
            tree.show_root = True
            yield tree
            with Vertical(id="inventory-right"):
                yield Input(placeholder="search assets by name or address  (/)", id="asset-search")
                yield Label("", markup=False, id="assets-count", classes="section-title")
                table: DataTable = PlainTable(id="assets-table", cursor_type="row", zebra_stripes=True)
                # 80 columns: whether the host key is pinned comes before what is merely descriptive.
                for key in ("name", "host key", "address", "platform", "active", "nodes"):
                    table.add_column(key, key=key)
                yield table
                yield Label("", markup=False, id="accounts-title", classes="section-title")
                accounts: DataTable = PlainTable(id="accounts-table", cursor_type="row", zebra_stripes=True)
                for key in ("account", "status", "type", "changed", "ver", "privileged", "changeable"):
                    accounts.add_column(key, key=key)
                yield accounts

    # -- loading -----------------------------------------------------------------------------------
    def _fill_tree(self, nodes: list[NodeInfo]) -> None:
        tree = self.query_one("#node-tree", Tree)
        if [n.path for n in nodes] == getattr(self, "_node_paths", None):
            return
        self._node_paths = [n.path for n in nodes]
        tree.clear()
        by_path = {}
        parents = {n.path.rsplit("/", 1)[0] for n in nodes}
        for n in nodes:  # sorted by path, so a parent comes before its children
            parent = by_path.get(n.path.rsplit("/", 1)[0], tree.root)
            if n.path in parents:
                by_path[n.path] = parent.add(n.name, data=n.path, expand=True)
            else:
                by_path[n.path] = parent.add_leaf(n.name, data=n.path)
        tree.root.expand()

    def reload(self) -> None:
        """Load the tree, the current page of assets and the highlighted asset's accounts (in a thread worker;
        the tables fill when the data arrives)."""
        ctx, node, drift, offset = self.ctx, self.node, self.drift_only, self.page_offset
        search = self.query_one("#asset-search", Input).value.strip()

        def page() -> tuple[list[NodeInfo], int, int, list[AssetInfo]]:
            nodes = svc.list_nodes(ctx)
            total = svc.count_assets(ctx, node=node, search=search, drift=drift)
            start = max(0, min(offset, (total - 1) // PAGE * PAGE if total else 0))
            return nodes, total, start, svc.list_assets(ctx, node=node, search=search, offset=start, limit=PAGE,
                                                        drift=drift)

        self.read_in_thread("inventory", page, self._show_assets, name="Loading assets")

    def _show_assets(self, data: tuple[list[NodeInfo], int, int, list[AssetInfo]]) -> None:
        nodes, total, self.page_offset, assets = data
        self.total = total
        self._fill_tree(nodes)
        table = self.query_one("#assets-table", PlainTable)
        cursor = table.cursor_row
        self._assets = {a.name: a for a in assets}
        cells = []
        for a in assets:
            address = a.address if a.port == 22 else f"{a.address}:{a.port}"
            pinned = Text("pinned", "green") if a.host_keys else Text("NONE", "bold red")
            cells.append((a.name, (a.name, pinned, address, a.platform,
                                   Text("yes", "green") if a.active else Text("no", "dim"), ",".join(a.nodes) or "-")))
        table.show_rows(cells)
        if assets:
            table.move_cursor(row=min(max(cursor, 0), len(assets) - 1))
        self.place_cursor(table)
        where = (f" in {self.node}" if self.node else "") + (" with drift (D: all)" if self.drift_only else "")
        show_text(self.query_one("#assets-count", Label),
            f"Assets{where} {self.page_offset + 1 if assets else 0}-{self.page_offset + len(assets)} of {total}")
        self._show_accounts(again=True)

    def _show_accounts(self, again: bool = False) -> None:
        """Load the highlighted asset's accounts (again: even when they are shown or on their way already)."""
        name = self.selected_asset()
        if name is None:
            self._accounts_asked = None
            self.query_one("#accounts-table", DataTable).clear()
            show_text(self.query_one("#accounts-title", Label), "Accounts")
            return
        if name == getattr(self, "_accounts_asked", None) and not again:
            return  # the cursor restored after a reload highlights the same asset
        self._accounts_asked = name
        ctx = self.ctx
        self.read_in_thread("accounts", lambda: (name, svc.list_accounts(ctx, asset=name)), self._fill_accounts,
                            name=f"Loading accounts of {name}")

    def _fill_accounts(self, data: tuple[str, list[AccountInfo]]) -> None:
        name, accounts = data
        table = self.query_one("#accounts-table", PlainTable)
        cursor = table.cursor_row
        now = self.now()
        show_text(self.query_one("#accounts-title", Label), f"Accounts on {name} ({len(accounts)})")
        table.show_rows((str(acc.id), (acc.username, status_text(acc.last_status) if acc.last_status else "-",
                                       "ssh key" if acc.secret_type == "ssh_key" else "password",
                                       ago(acc.last_changed_at, now), str(acc.version), "yes" if acc.privileged else "",
                                       "yes" if acc.can_change else "no")) for acc in accounts)
        if accounts and name == getattr(self, "_accounts_of", None):
            table.move_cursor(row=min(max(cursor, 0), len(accounts) - 1))
        self._accounts_of = name

    def selected_asset(self) -> str | None:
        """Name of the highlighted asset."""
        table = self.query_one("#assets-table", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """Moving through assets shows each one's accounts."""
        if event.data_table.id == "assets-table":
            self._show_accounts()

    def on_tree_node_selected(self, event: Tree.NodeSelected) -> None:
        """Choosing a node shows the assets in it and below it."""
        self.node = event.node.data
        self.page_offset = 0
        self.reload()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter assets as the user types."""
        self.page_offset = 0
        self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter goes back to the table."""
        self.query_one("#assets-table", DataTable).focus()

    def action_focus_search(self) -> None:
        """Jump to the search field."""
        self.query_one("#asset-search", Input).focus()

    def action_toggle_drift(self) -> None:
        """Show only assets with drift (an account whose newest heartbeat is not ok), or all again."""
        self.drift_only = not self.drift_only
        self.page_offset = 0
        self.reload()

    def action_page(self, step: int) -> None:
        """Previous or next page of assets."""
        self.page_offset = max(0, self.page_offset + step * PAGE)
        self.reload()

    def _need_asset(self) -> str | None:
        name = self.selected_asset()
        if name is None:
            self.notify("No asset selected", severity="warning")
        return name

    # -- actions -----------------------------------------------------------------------------------
    def action_new(self) -> None:
        """Add an asset."""
        if not self.kt.permit("edit"):
            return
        self.app.push_screen(AssetFormModal(self.ctx, None), self._saved)

    def action_edit(self) -> None:
        """Edit the highlighted asset."""
        if not self.kt.permit("edit"):
            return
        name = self._need_asset()
        if name is not None:
            ctx = self.ctx
            self.read_in_thread("asset", lambda: svc.get_asset(ctx, name),
                                lambda asset: self.app.push_screen(AssetFormModal(self.ctx, asset), self._saved),
                                name=f"Opening asset {name}")

    def _saved(self, asset: AssetInfo | None) -> None:
        if asset:
            self.notify(f"Asset {asset.name} saved" + ("" if asset.host_keys else "; pin its host key with k"))
            self._node_paths = None
            self.reload()

    def action_remove(self) -> None:
        """Remove the highlighted asset with its accounts (after a confirmation)."""
        if not self.kt.permit("edit"):
            return
        name = self._need_asset()
        if name is None:
            return
        ctx = self.ctx
        self.read_in_thread("asset", lambda: svc.asset_to_remove(ctx, name).accounts,
                            lambda count: self._ask_remove(name, count), name=f"Opening asset {name}")

    def _ask_remove(self, name: str, count: int) -> None:
        ctx = self.ctx

        def removed(_: object) -> None:
            self.notify(f"Asset {name} removed")
            self.reload()

        def done(yes: bool | None) -> None:
            if yes:
                self.write_in_thread(f"Removing asset {name}", lambda: svc.remove_asset(ctx, name), removed)

        self.app.push_screen(ConfirmModal(
            f"Remove asset {name}?",
            f"Its {count} accounts are deleted with their current and earlier secrets.", yes="Remove",
            danger=True), done)

    def action_import_file(self) -> None:
        """Import an inventory file (CSV, keyturn YAML, Ansible INI/YAML)."""
        if not self.kt.permit("edit"):
            return

        def check(path: str) -> str | None:
            return None if Path(path).expanduser().is_file() else f"path: no file {path}"

        def done(path: str | None) -> None:
            if path:
                self.notify(f"Importing {path}…")
                self._import(str(Path(path).expanduser()))

        self.app.push_screen(PromptModal("Import inventory file", placeholder="~/inventory.yaml", check=check), done)

    def _import(self, path: str) -> None:
        ctx = self.ctx
        # On a step-up the file was read and checked, nothing written: a code, then the import again.
        self.write_in_thread("Import", lambda: describe_summary(svc.import_file(ctx, Path(path), source=path)),
                             lambda text: self._imported(path, text), again=lambda: self._import(path))

    def _imported(self, path: str, text: str) -> None:
        self.notify(f"{path}: {text}", title="Imported")
        self._node_paths = None
        self.reload()

    def action_trust(self) -> None:
        """Fetch the highlighted asset's host keys, show their fingerprints, and pin them if confirmed."""
        if not self.kt.permit("edit"):
            return
        name = self._need_asset()
        if name is not None:
            self.notify(f"Fetching host keys of {name}…")
            self._fetch_keys(name)

    @work(thread=True, group="hostkey", exit_on_error=False, name="Fetching host keys")
    def _fetch_keys(self, name: str) -> None:
        try:
            offer = svc.fetch_offer(self.ctx, name)
        except StepUpRequired as exc:  # asked before the fingerprints are shown: a code, then fetch again
            self.app.call_from_thread(self.kt.step_up, exc, lambda: self._fetch_keys(name))
            return
        self.app.call_from_thread(self._confirm_keys, offer)

    def _confirm_keys(self, offer: svc.HostKeyOffer) -> None:
        asset, check = offer.asset, offer.check
        lines = [f"{t:<20} {fp}" for t, fp in offer.fingerprints]
        if check.already_pinned:
            self.notify(f"{asset.name}: these keys are already pinned\n" + "\n".join(lines))
            return
        body = f"{asset.address}:{asset.port} offers:\n" + "\n".join(lines)
        if check.changed:
            body = ("WARNING: the host key CHANGED since it was pinned. This is how a man-in-the-middle looks; "
                    "compare with the host's own fingerprint first.\npinned now:\n"
                    + "\n".join(f"{k.key_type:<20} {k.fingerprint}" for k in asset.host_keys
                                 if (k.key_type, k.key_base64) in check.changed) + "\n" + body)

        ctx = self.ctx

        def pinned(count: int) -> None:
            self.notify(f"Pinned {plural(count, 'host key')} on {asset.name}")
            self.reload()

        def done(yes: bool | None) -> None:
            if not yes:
                self.notify("Nothing pinned")
                return
            # A step-up when the unlock ran out while the question was open: a code, then pin again.
            self.write_in_thread(f"Pinning host keys of {asset.name}", lambda: svc.pin_offer(ctx, offer), pinned,
                                 again=lambda: done(True))

        self.app.push_screen(ConfirmModal(
            f"{'Replace' if check.changed else 'Pin'} host key of {asset.name}?", body,
            yes="Replace" if check.changed else "Pin", danger=bool(check.changed)), done)

    def action_reveal(self) -> None:
        """Reveal the highlighted account's current secret (after a TOTP check)."""
        table = self.query_one("#accounts-table", DataTable)
        if not table.row_count:
            self.notify("No account selected (Tab to the accounts table)", severity="warning")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.kt.reveal_account(int(key))

    # -- accounts of the highlighted asset -------------------------------------------------------------
    def _need_account(self, then: Callable[[str, AccountInfo], None]) -> None:
        """Call then(asset, account) with the highlighted asset and its highlighted account, read afresh in a
        thread worker; or say what is missing."""
        asset = self._need_asset()
        table = self.query_one("#accounts-table", DataTable)
        if asset is None:
            return
        if not table.row_count:
            self.notify(f"No account on {asset} (a adds one)", severity="warning")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        ctx = self.ctx

        def found(account: AccountInfo | None) -> None:
            if account is None:  # removed elsewhere since the table was filled
                self.reload()
                self.notify("That account is gone", severity="warning")
                return
            then(asset, account)

        self.read_in_thread(
            "account", lambda: next((a for a in svc.list_accounts(ctx, asset=asset) if str(a.id) == key), None),
            found, name=f"Opening an account of {asset}")

    def action_add_account(self) -> None:
        """Add an account to the highlighted asset (its secret typed into a masked field)."""
        if not self.kt.permit("edit"):
            return
        asset = self._need_asset()
        if asset is not None:
            self.app.push_screen(AccountFormModal(self.ctx, asset, None),
                                 lambda outcome: self._account_saved(asset, outcome))

    def action_edit_account(self) -> None:
        """Change the highlighted account: privileged, changeable, or a new secret."""
        if not self.kt.permit("edit"):
            return
        self._need_account(lambda asset, account: self.app.push_screen(
            AccountFormModal(self.ctx, asset, account), lambda outcome: self._account_saved(asset, outcome)))

    def _account_saved(self, asset: str, saved: tuple[str, str] | None) -> None:
        if saved:
            username, outcome = saved
            self.notify(f"Account {username}@{asset} {outcome}")
            self.reload()

    def action_remove_account(self) -> None:
        """Remove the highlighted account with its secret and history (after a confirmation)."""
        if not self.kt.permit("edit"):
            return
        ctx = self.ctx

        def chosen(asset: str, account: AccountInfo) -> None:
            self.read_in_thread("account-removal", lambda: svc.account_to_remove(ctx, asset, account.username,
                                                                         account.secret_type),
                                self._ask_remove_account, name=f"Opening account {account.username}@{asset}")

        self._need_account(chosen)

    def _ask_remove_account(self, gone: svc.AccountRemoval) -> None:
        asset = gone.asset
        kind = "SSH key" if gone.secret_type == "ssh_key" else "password"

        def done(yes: bool | None) -> None:
            if yes:
                self._remove_account(gone)

        self.app.push_screen(ConfirmModal(
            f"Remove account {gone.username}@{asset}?",
            f"Its {kind} (version {gone.version}) is deleted from the vault with its earlier secrets.",
            yes="Remove", danger=True), done)

    def _remove_account(self, gone: svc.AccountRemoval) -> None:
        ctx = self.ctx

        def removed(_: object) -> None:
            self.notify(f"Account {gone.username}@{gone.asset} removed")
            self.reload()

        # Should core ask for a code here (a privileged account), ask the acting person and remove again.
        self.write_in_thread(f"Removing account {gone.username}@{gone.asset}",
                             lambda: svc.remove_account(ctx, gone.asset, gone.username, gone.secret_type), removed,
                             again=lambda: self._remove_account(gone))
