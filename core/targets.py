"""Which accounts a task would change, and which it leaves out and why (the preview the engine also works from).

Targets are the task's user names on every asset in scope (chosen assets plus every asset below chosen nodes),
restricted to accounts of the task's secret type that may be changed. A handful of queries covers any number
of assets, so the TUI can show a live preview line while a task is being edited.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlmodel import Session, col, exists, select

from core.context import Context
from core.drivers.dbconn import DB_PLATFORMS, WELL_KNOWN_ADMINS
from core.drivers.selfchange import will_self_change
from core.errors import InputError
from core.wording import plural
from storage.db import Database
from storage.inventory import node_ids_below, normalize_node_path
from storage.tables import Account, Asset, AssetNode, HostKey, Node
from storage.types import TaskSpec

SUPPORTED_PLATFORMS = ("linux", "unix", "aix", "custom-ssh", "postgresql", "mysql", "mariadb", "redis")

REASON_SECURE_PRIVILEGED = "secure mode: privileged account"
REASON_SECURE_LOGIN = "secure mode: the account keyturn logs in with"
REASON_INACTIVE = "asset inactive"
REASON_NO_PRIVILEGED = "no privileged account on the asset"
REASON_CAN_CHANGE = "can_change is off"
REASON_NO_ACCOUNT = "no such account on this asset"
REASON_WINDOWS = "windows domain accounts are not supported"
REASON_DB_KEY = "database accounts take passwords, not SSH keys"


def reason_well_known_admin(platform: str) -> str:
    """The exclusion reason for a database's built-in administrator under secure mode."""
    return f"secure mode: well-known {platform} admin account"


def reason_unsupported(platform: str) -> str:
    """The exclusion reason for an asset whose platform keyturn cannot change secrets on."""
    from core.drivers.dbconn import REJECTED_PLATFORMS

    if platform in REJECTED_PLATFORMS:
        return f"platform {platform} not supported ({REJECTED_PLATFORMS[platform].split(': ', 1)[1]})"
    return f"platform {platform} not supported"


@dataclass(frozen=True)
class Target:
    """One account the task would change."""

    account_id: int
    asset_id: int
    asset_name: str
    address: str
    port: int
    platform: str
    username: str
    secret_type: str
    privileged: bool
    # An SSH host with no pinned key refuses the connection at run time: the preview says so up front.
    host_key_pinned: bool = True
    self_change: bool = False  # logs in as itself to change its password (no privileged account used)


@dataclass(frozen=True)
class Exclusion:
    """A (asset, user name) in the task's scope that will not be changed, and why."""

    asset_name: str
    username: str
    reason: str
    platform: str = ""


@dataclass
class Preview:
    """The targets of a task and what it leaves out."""

    targets: list[Target] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    assets_in_scope: int = 0
    outside_scope: int = 0  # assets the task covers outside the acting operator's scope (visible_preview)

    @property
    def asset_count(self) -> int:
        """Number of distinct assets with at least one target."""
        return len({t.asset_id for t in self.targets})

    def reasons(self) -> Counter[str]:
        """How many exclusions each reason accounts for."""
        return Counter(e.reason for e in self.excluded)

    def summary(self) -> str:
        """One line: 'N accounts on M assets; K excluded (3 asset inactive, 1 can_change is off)'."""
        n, m = len(self.targets), self.asset_count
        line = f"{plural(n, 'account')} on {plural(m, 'asset')}"
        if self.excluded:
            parts = ", ".join(f"{count} {reason}" for reason, count in self.reasons().most_common())
            line += f"; {len(self.excluded)} excluded ({parts})"
        else:
            line += "; none excluded"
        own = sum(1 for t in self.targets if t.self_change)
        if own:
            line += f"; {own} will self-change"
        if self.outside_scope:
            n = self.outside_scope
            line += f"; {n} more asset{'s' if n != 1 else ''} outside your scope (not shown)"
        return line


def _scope_asset_ids(session: Session, spec: TaskSpec) -> set[int]:
    ids: set[int] = set()
    names = list(dict.fromkeys(spec.assets))
    if names:
        found = dict(session.exec(select(Asset.name, Asset.id).where(col(Asset.name).in_(names))).all())
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError(f"assets: no asset named {', '.join(repr(m) for m in missing)}", field="assets")
        ids.update(found.values())
    if spec.nodes:
        paths = []
        for p in spec.nodes:
            try:
                paths.append(normalize_node_path(p))
            except ValueError:
                raise InputError(f"nodes: {p!r} is not a node path such as /prod/db", field="nodes") from None
        found = dict(session.exec(select(Node.path, Node.id).where(col(Node.path).in_(paths))).all())
        missing = [p for p in paths if p not in found]
        if missing:
            raise InputError(f"nodes: no node {', '.join(repr(m) for m in missing)}", field="nodes")
        below = node_ids_below(session, found.values())
        ids.update(session.exec(select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(below))).all())
    return ids


def _chunks(items: list[int], size: int = 900) -> list[list[int]]:
    # SQLite limits bound parameters per statement; chunks keep thousands of assets to a few queries.
    return [items[i:i + size] for i in range(0, len(items), size)]


# Platforms reached over SSH, so a pinned host key is needed (databases connect with their own protocol).
SSH_PLATFORMS = frozenset({"linux", "unix", "aix", "custom-ssh"})


def preview(ctx: Context, spec: TaskSpec) -> Preview:
    """The accounts the task would change now, and every (asset, user) in scope it leaves out with the reason."""
    secure = ctx.settings.secure_mode
    usernames = list(dict.fromkeys(spec.usernames))
    result = Preview()
    with ctx.db.read() as s:
        asset_ids = sorted(_scope_asset_ids(s, spec))
        result.assets_in_scope = len(asset_ids)
        assets: dict[int, Asset] = {}
        accounts: dict[tuple[int, str], Account] = {}
        login: dict[int, int] = {}  # asset id -> id of the privileged account keyturn logs in with
        pinned: set[int] = set()
        for chunk in _chunks(asset_ids):
            # Whether a key is pinned comes with the asset row: no query more per chunk.
            has_key = exists().where(HostKey.asset_id == Asset.id)
            for a, keyed in s.exec(select(Asset, has_key).where(col(Asset.id).in_(chunk))).all():
                assets[a.id] = a
                if keyed:
                    pinned.add(a.id)
            if usernames:
                for acc in s.exec(select(Account).where(col(Account.asset_id).in_(chunk),
                                                        col(Account.username).in_(usernames),
                                                        Account.secret_type == spec.secret_type)).all():
                    accounts[(acc.asset_id, acc.username)] = acc
            # Same choice as storage.inventory.privileged_account: the first privileged account by id.
            for asset_id, acc_id in s.exec(select(Account.asset_id, Account.id)
                                           .where(col(Account.asset_id).in_(chunk), Account.privileged == True)  # noqa: E712
                                           .order_by(Account.id)).all():
                login.setdefault(asset_id, acc_id)
    for asset in sorted(assets.values(), key=lambda a: a.name):
        for user in usernames:
            acc = accounts.get((asset.id, user))
            own = acc is not None and will_self_change(spec.params, asset.platform, acc.secret_type,
                                                       acc.secret_enc is not None)
            reason = _exclusion_reason(asset, acc, login.get(asset.id), secure, self_change=own)
            if reason is not None:
                result.excluded.append(Exclusion(asset.name, user, reason, asset.platform))
                continue
            assert acc is not None
            result.targets.append(Target(
                account_id=acc.id, asset_id=asset.id, asset_name=asset.name, address=asset.address, port=asset.port,
                platform=asset.platform, username=user, secret_type=acc.secret_type, privileged=acc.privileged,
                host_key_pinned=asset.id in pinned or asset.platform not in SSH_PLATFORMS,
                self_change=own,
            ))
    return result


def _exclusion_reason(asset: Asset, acc: Account | None, login_id: int | None, secure: bool, *,
                      self_change: bool = False) -> str | None:
    if asset.platform == "windows":
        return REASON_WINDOWS
    if asset.platform not in SUPPORTED_PLATFORMS:
        return reason_unsupported(asset.platform)
    if not asset.active:
        return REASON_INACTIVE
    if acc is None:
        return REASON_NO_ACCOUNT
    if not acc.can_change:
        return REASON_CAN_CHANGE
    if login_id is None and not self_change:
        return REASON_NO_PRIVILEGED
    if secure and acc.id == login_id:
        return REASON_SECURE_LOGIN
    if secure and acc.privileged:
        return REASON_SECURE_PRIVILEGED
    if asset.platform in DB_PLATFORMS:
        if acc.secret_type != "password":
            return REASON_DB_KEY
        if secure and acc.username in WELL_KNOWN_ADMINS.get(asset.platform, ()):
            return reason_well_known_admin(asset.platform)
    return None


def target_note(target: Target, spec: TaskSpec) -> str:
    """What exactly a run changes for a target, where the platform needs saying (the MySQL entry, Redis ACL)."""
    if target.platform in ("mysql", "mariadb"):
        if spec.params.all_hosts:
            return f"every '{target.username}'@host entry"
        return f"entry '{target.username}'@'{spec.params.account_host}'"
    if target.platform == "redis":
        return "ACL user"
    if target.platform == "postgresql":
        return "role"
    return ""


def scope_platforms(db: Database, spec: TaskSpec) -> set[str]:
    """The platforms of the assets a task covers now (names that do not exist yet are left out)."""
    with db.read() as s:
        ids: set[int] = set()
        if spec.assets:
            ids.update(s.exec(select(Asset.id).where(col(Asset.name).in_(list(spec.assets)))).all())
        paths = []
        for p in spec.nodes:
            try:
                paths.append(normalize_node_path(p))
            except ValueError:
                continue
        if paths:
            node_ids = s.exec(select(Node.id).where(col(Node.path).in_(paths))).all()
            below = node_ids_below(s, node_ids)
            ids.update(s.exec(select(AssetNode.asset_id).where(col(AssetNode.node_id).in_(below))).all())
        platforms: set[str] = set()
        for chunk in _chunks(sorted(ids)):
            platforms.update(s.exec(select(Asset.platform).where(col(Asset.id).in_(chunk)).distinct()).all())
    return platforms


def visible_preview(ctx: Context, spec: TaskSpec) -> Preview:
    """The preview as the acting operator may see it (what both front ends show; the engine works from the
    whole preview() and refuses a run reaching outside the scope).

    For an operator limited to node subtrees, targets and exclusions on assets outside the scope are left out
    and only counted (outside_scope); an asset outside the scope that the task names reads as missing."""
    import dataclasses

    from core.scopes import scope_of
    from core.tasks import HIDDEN_ASSET
    from storage.scopes import targets_outside

    stored: set[str] = set()
    if HIDDEN_ASSET in spec.assets and spec.id is not None:  # core.tasks.get_task hid these names: the stored ones
        from storage.tasks import get_task_by_id

        stored = set(get_task_by_id(ctx.db, spec.id).assets)
        spec = dataclasses.replace(spec, assets=[a for a in spec.assets if a != HIDDEN_ASSET] + sorted(stored))
    if ctx.operator and spec.assets:
        _, hidden = targets_outside(ctx.db, ctx.operator, [], list(spec.assets), missing=True)
        typed = [a for a in hidden if a not in stored]
        if typed:
            raise InputError(f"assets: no asset named {', '.join(repr(a) for a in typed)}", field="assets")
    result = preview(ctx, spec)
    allowed = scope_of(ctx)
    if allowed is None:
        return result
    with ctx.db.read() as s:
        outside = _scope_asset_ids(s, spec) - allowed
        names = set(s.exec(select(Asset.name).where(col(Asset.id).in_(sorted(outside))))) if outside else set()
    result.targets = [t for t in result.targets if t.asset_id not in outside]
    result.excluded = [e for e in result.excluded if e.asset_name not in names]
    result.assets_in_scope -= len(outside)
    result.outside_scope = len(outside)
    return result


def preview_summary(ctx: Context, spec: TaskSpec) -> str:
    """The one-line preview for the TUI's live line; a bad asset or node name reads as its error."""
    try:
        return visible_preview(ctx, spec).summary()
    except InputError as exc:
        return str(exc)
