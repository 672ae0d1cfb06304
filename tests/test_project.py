"""Meta-tests: the schema file is current, and the layering rules hold."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from app import config
from app.audit import signing
from app.config import ConfigError, Settings
from app.schema import build_schema

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"


def test_schema_graphql_is_current() -> None:
    exported = build_schema(production=False).as_str() + "\n"
    assert (ROOT / "schema.graphql").read_text() == exported, "run `make schema`"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_services_never_import_the_web_or_graphql_layers() -> None:
    services = [
        p for p in APP.rglob("*.py") if p.parent.name not in {"schema", "resolvers", "http"}
    ]
    services = [p for p in services if p.name not in {"main.py", "cli.py"}]
    assert services
    for path in services:
        bad = {n for n in _imports(path) if n.split(".")[0] in {"strawberry", "starlette"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_app_db_sets_tenant_settings_or_writes_sql_text() -> None:
    for path in APP.rglob("*.py"):
        if path.parent.name == "db":
            continue
        source = path.read_text()
        assert "set_config" not in source, path
        assert "app.firm_id" not in source, path
        assert "import text" not in source, path


SESSION_SET = re.compile(r"\bset\s+(session|role|app\.)", re.I)


def _set_config_calls(source: str) -> list[list[str]]:
    """Each set_config call's top-level arguments, however nested they are."""
    calls = []
    for found in re.finditer(r"set_config\(", source, re.I):
        depth, arguments, current = 1, [], ""
        for char in source[found.end() :]:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth == 0:
                break
            if char == "," and depth == 1:
                arguments.append(current.strip())
                current = ""
            else:
                current += char
        calls.append([*arguments, current.strip()])
    return calls


def test_every_setting_dies_with_its_transaction() -> None:
    """The write and read lanes' pool skips asyncpg's reset on release (engine.py), so a
    setting that outlived its transaction would carry one request's firm to the next on that
    connection. Every set_config, in the app and in the database functions the migrations make,
    is transaction-local (its third argument true), and nothing sets a session or role."""
    calls = []
    for path in [*APP.rglob("*.py"), *(ROOT / "migrations").rglob("*.py")]:
        source = path.read_text()
        calls += [(path, call) for call in _set_config_calls(source) if call != ["...", "true"]]
        assert not SESSION_SET.search(source), (path, SESSION_SET.search(source))
    assert [(path, call) for path, call in calls if call[-1].lower() != "true"] == []
    assert len(calls) >= 8  # the tenant's, the mail sender's, the checkpointer's, two functions'
    assert _set_config_calls("set_config('app.firm_id', coalesce(x, ''), false)") == [
        ["'app.firm_id'", "coalesce(x, '')", "false"]
    ]


SQL_VERB = re.compile(
    r"\s*(select|insert|update|delete|create|alter|drop|grant|revoke|with)\b", re.I
)
SQL_CALLS = {"text", "execute", "executemany", "fetch", "fetchrow", "fetchval", "cursor", "prepare"}
# Statements that must name an identifier (DDL cannot bind one as a parameter), each built from
# our own constants: the migrations' RLS snippet and the embedded server's database. Lines per
# file.
IDENTIFIER_SQL = {
    "app/db/ddl.py": 3,  # force_rls(table): alter table / create policy on a table we name
    # create database "<quoted>"; alter database "<quoted>" owner, reset all; revoke temporary;
    # revoke create (its call and its text on two lines)
    "app/db/bootstrap.py": 6,
}


def _built_from_values(node: ast.AST) -> str | None:
    """The literal text of a string built from run-time values, or None."""
    if isinstance(node, ast.JoinedStr) and any(
        isinstance(v, ast.FormattedValue) for v in node.values
    ):
        return "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        for side in (node.left, node.right):
            if isinstance(side, ast.Constant) and isinstance(side.value, str):
                return side.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"format", "join"}
        and isinstance(node.func.value, ast.Constant)
    ):
        return str(node.func.value.value)
    return None


def _constant_text(node: ast.AST, constants: set[str]) -> bool:
    """Whether an expression is text fixed in the source: literals, and module-level names and
    sums of them (``_ENTRIES + "where ..."``)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant_text(node.left, constants) and _constant_text(node.right, constants)
    if isinstance(node, ast.IfExp):
        return _constant_text(node.body, constants) and _constant_text(node.orelse, constants)
    return False


def _bindings(node: ast.AST) -> list[tuple[str, ast.expr]]:
    """The names an assignment binds, each with the expression it binds: plain and annotated
    assignments, and a tuple assigned a tuple, pairwise."""
    if isinstance(node, ast.AnnAssign) and node.value and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    if not isinstance(node, ast.Assign):
        return []
    pairs: list[tuple[str, ast.expr]] = []
    for target in node.targets:
        if isinstance(target, ast.Name):
            pairs.append((target.id, node.value))
        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            pairs += [
                (name.id, value)
                for name, value in zip(target.elts, node.value.elts, strict=False)
                if isinstance(name, ast.Name)
            ]
    return pairs


def _module_constants(tree: ast.Module) -> set[str]:
    constants: set[str] = set()
    for node in tree.body:  # in order: a constant may be built from earlier ones
        constants |= {n for n, value in _bindings(node) if _constant_text(value, constants)}
    return constants


def _sql_pieced_together(tree: ast.Module) -> set[int]:
    """Lines where a statement is assembled from values in steps the expression check cannot
    see: text held in a variable, then extended (``q += w``, ``q = q + w``) or sent. Per scope:
    a name built from values, or holding a statement's text, in one function says nothing of
    another's."""
    constants = _module_constants(tree)
    lines: set[int] = set()
    scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in [tree, *scopes]:
        nodes = [
            n
            for n in ast.walk(scope)
            if n is scope or not isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        statements: set[str] = set()
        built: set[str] = set()
        for node in nodes:
            for name, value in _bindings(node):
                text = _built_from_values(value)
                if text is not None and not _constant_text(value, constants):
                    built.add(name)
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    text = value.value
                if text is not None and SQL_VERB.match(text):
                    statements.add(name)
        for node in nodes:
            if (
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id in statements | built
                and not _constant_text(node.value, constants)
            ):
                lines.add(node.lineno)
            for name, value in _bindings(node):
                if (
                    name in statements | built
                    and isinstance(value, ast.BinOp)
                    and isinstance(value.op, ast.Add)
                    and isinstance(value.left, ast.Name)
                    and value.left.id == name
                    and not _constant_text(value.right, constants)
                ):
                    lines.add(node.lineno)
            if (
                isinstance(node, ast.Call)
                and node.args
                and _sql_call(node)
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in built
            ):
                lines.add(node.lineno)
    return lines


def _sql_call(node: ast.Call) -> bool:
    return (
        getattr(node.func, "attr", None) in SQL_CALLS or getattr(node.func, "id", None) in SQL_CALLS
    )


def _sql_built_from_values(source: str) -> set[int]:
    """The lines of ``source`` that build a statement from values."""
    tree = ast.parse(source)
    constants = _module_constants(tree)
    lines = _sql_pieced_together(tree)
    for node in ast.walk(tree):
        built = None if _constant_text(node, constants) else _built_from_values(node)
        sent = (
            isinstance(node, ast.Call)
            and node.args
            and _sql_call(node)
            and _built_from_values(node.args[0]) is not None
            and not isinstance(node.args[0], ast.BinOp | ast.Constant)
        )
        if (built is not None and SQL_VERB.match(built)) or sent:
            lines.add(node.lineno)
    return lines


def test_no_sql_is_built_from_values() -> None:
    """Parameters are always bound: no statement is formatted, concatenated or joined from
    values, whether written where it is sent, kept in a variable first, or extended in steps."""
    found = {
        str(path.relative_to(ROOT)): _sql_built_from_values(path.read_text())
        for path in APP.rglob("*.py")
    }
    assert {path: len(lines) for path, lines in found.items() if lines} == IDENTIFIER_SQL


@pytest.mark.parametrize(
    "source",
    [
        'q = "select * from t where a = %s" % a',
        'text(f"select * from {table}")',
        'conn.fetch("delete from t where id = " + str(i))',
        'def f(i):\n    q = "select * from t"\n    q += " where id = " + i\n    conn.fetch(q)',
        'def f(c):\n    q = "select " + ", ".join(c)\n    return text(q)',
        'def f(c):\n    q = ", ".join(c)\n    return conn.fetch(q)',
        'conn.execute(" and ".join(parts))',
        'def f(w):\n    q = "update t set a = 1"\n    q += w\n    return conn.execute(q)',
        'def f(w):\n    q = "update t set a = 1"\n    q = q + w\n    return conn.execute(q)',
        'def f(w):\n    q: str = "update t set a = 1"\n    q += w\n    return conn.execute(q)',
        'def f(w):\n    q, n = ", ".join(w), 1\n    return conn.fetch(q)',
    ],
)
def test_the_sql_check_sees_statements_built_from_values(source: str) -> None:
    assert _sql_built_from_values(source)


@pytest.mark.parametrize(
    "source",
    [
        '_A = "select a from t "\n_B = _A + "where id = $1"\nconn.fetch(_B, i)',
        '_A = "from t"\n_B = "select a " + _A\nconn.fetch(_B)',
        'def f(c):\n    line = ", ".join(c)\n    print(line)',
        'def f(i):\n    n = 0\n    n += i\n    return conn.fetch("select $1::int", n)',
        "def f(q):\n    return session.execute(q.where(x == 1))",
    ],
)
def test_the_sql_check_lets_fixed_statements_through(source: str) -> None:
    assert not _sql_built_from_values(source)


def test_production_refuses_to_start_without_its_settings() -> None:
    settings = Settings(_env_file=None, env="production", public_url="http://api.example.test")  # type: ignore[call-arg]
    with pytest.raises(ConfigError) as refused:
        settings.check_production()
    problems = refused.value.problems
    assert len(problems) == 5
    assert any("COVERPROOF_RATE_LIMIT_STORAGE must name Redis" in p for p in problems)
    assert any("COVERPROOF_STORAGE_URL" in p for p in problems)
    assert any("COVERPROOF_SECRET_KEY" in p for p in problems)
    assert any("COVERPROOF_DATABASE_URL" in p for p in problems)
    assert any("https://" in p for p in problems)


@pytest.mark.parametrize("proxies", ["lb.internal", "10.0.0.5, lb.internal", "10.0.0.0/33"])
def test_a_trusted_proxy_that_is_no_address_is_refused(proxies: str) -> None:
    """Read on each request, an entry that is no address failed every API request with a 500
    while /readyz answered 200: refused when the settings are read, naming the setting."""
    with pytest.raises(ValidationError, match="COVERPROOF_TRUSTED_PROXIES"):
        Settings(_env_file=None, trusted_proxies=proxies)  # type: ignore[call-arg]
    kept = Settings(_env_file=None, trusted_proxies="10.0.0.5, 10.0.0.1/8, 2001:db8::/64")  # type: ignore[call-arg]
    assert kept.trusted_proxies == ["10.0.0.5", "10.0.0.1/8", "2001:db8::/64"]


@pytest.mark.parametrize("links", ["http://app.example.test", "app.example.test"])
def test_production_refuses_emailed_links_other_than_https(links: str) -> None:
    """Emailed sign-in, reset, invitation and recipient links carry their token to the page
    at COVERPROOF_LINK_BASE_URL: a plain-HTTP page can be rewritten on the way to send it
    elsewhere."""
    production = {
        "env": "production",
        "secret_key": "s" * 32,
        "database_url": "postgresql://coverproof_app@db.example.test/coverproof",
        "rate_limit_storage": "redis://127.0.0.1:6379/0",
        "public_url": "https://api.example.test",
        "storage_url": "s3://bucket/packs",
    }
    Settings(_env_file=None, **production).check_production()  # type: ignore[arg-type]
    settings = Settings(_env_file=None, link_base_url=links, **production)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as refused:
        settings.check_production()
    assert refused.value.problems == [
        "COVERPROOF_LINK_BASE_URL must be an https:// URL in production: emailed links carry "
        "their tokens to it."
    ]
    development = Settings(_env_file=None, link_base_url="http://127.0.0.1:3000")  # type: ignore[call-arg]
    development.check_production()


@pytest.mark.parametrize(
    ("setting", "least"),
    [
        ("cover_expiry_window_days", 0),
        ("declaration_grace_days", 0),
        ("audit_checkpoint_minutes", 0),  # 0: no periodic checkpoints
        ("pack_sweep_minutes", 0),  # 0: no sweep
        ("port", 1),
        ("max_body_bytes", 1),
        ("db_pool_size", 1),
        ("session_idle_minutes", 1),
        ("magic_link_minutes", 1),
        ("verification_hours", 1),
        ("password_reset_minutes", 1),
        ("invitation_days", 1),
        ("declaration_token_days", 1),
        ("pack_render_concurrency", 1),
    ],
)
def test_a_number_below_what_its_setting_can_mean_is_refused(setting: str, least: int) -> None:
    """A negative cover window was taken, and every cover status and evidence pack then failed
    with an internal error; a pool, a lifetime or a limit of nothing is no setting either."""
    assert getattr(Settings(_env_file=None, **{setting: least}), setting) == least  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=setting):
        Settings(_env_file=None, **{setting: least - 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "setting",
    [
        "cover_expiry_window_days",
        "declaration_grace_days",
        "declaration_token_days",
        "invitation_days",
        "verification_hours",
        "magic_link_minutes",
        "password_reset_minutes",
        "session_idle_minutes",
        "audit_checkpoint_minutes",
        "pack_sweep_minutes",
    ],
)
def test_a_duration_past_what_a_date_can_hold_is_refused(setting: str) -> None:
    """COVERPROOF_COVER_EXPIRY_WINDOW_DAYS=3000000 (a slip for 30) was taken, and every cover
    status and pack then failed with an internal error: today and three million days is past
    the last day a date holds. Ten years is the most any of these may be."""
    unit = setting.rsplit("_", 1)[1]
    most = {"days": config.TEN_YEARS_DAYS, "hours": config.TEN_YEARS_HOURS}.get(
        unit, config.TEN_YEARS_MINUTES
    )
    assert getattr(Settings(_env_file=None, **{setting: most}), setting) == most  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=setting):
        Settings(_env_file=None, **{setting: 3_000_000_000})  # type: ignore[arg-type]
    assert (datetime.now(UTC) + timedelta(**{unit: most})).year < 2100  # any date holds it


@pytest.mark.parametrize(
    ("setting", "most"),
    [
        ("max_body_bytes", config.MOST_BODY_BYTES),
        ("db_pool_size", config.MOST_POOL_SIZE),
        ("pack_render_concurrency", config.MOST_RENDER_SLOTS),
    ],
)
def test_a_size_past_what_one_process_can_hold_is_refused(setting: str, most: int) -> None:
    """A body limit of gigabytes let anyone make the process read that much for one request; a
    pool or render slots in the millions were taken as though a process could hold them."""
    assert getattr(Settings(_env_file=None, **{setting: most}), setting) == most  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=setting):
        Settings(_env_file=None, **{setting: most + 1})  # type: ignore[arg-type]


def test_production_refuses_to_make_up_an_audit_signing_key(tmp_path: Path) -> None:
    """A key generated on the spot would sign checkpoints nobody can check against a published
    key: production names the missing setting instead, and writes no key."""
    settings = Settings(_env_file=None, env="production", data_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ConfigError) as refused:
        signing.load(settings)
    assert refused.value.problems == [
        "COVERPROOF_AUDIT_SIGNING_KEY (an Ed25519 PEM key) must be set in production."
    ]
    assert list(tmp_path.iterdir()) == []
    development = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert signing.load(development).key_id == signing.load(development).key_id  # made once


def test_development_generates_the_secret_key_once(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    first = settings.resolved_secret_key()
    assert len(first) >= 32
    assert settings.resolved_secret_key() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_every_mutation_that_takes_an_idempotency_key_is_documented() -> None:
    from graphql import GraphQLInputObjectType, get_named_type

    mutation = build_schema(production=False)._schema.mutation_type
    assert mutation is not None
    keyed = {
        name
        for name, field in mutation.fields.items()
        for argument in field.args.values()
        if isinstance(kind := get_named_type(argument.type), GraphQLInputObjectType)
        and "idempotencyKey" in kind.fields
    }
    assert {"createDeclaration", "inviteMember", "createTemplateVersion"} <= keyed
    documented = (ROOT / "docs" / "api.md").read_text()
    assert [name for name in sorted(keyed) if f"`{name}`" not in documented] == []


def test_every_audit_action_is_documented() -> None:
    from app.audit.actions import Action

    documented = (ROOT / "docs" / "audit.md").read_text()
    missing = [action.value for action in Action if f"`{action.value}`" not in documented]
    assert missing == []


# What would change or remove an audit record, or open the way to it, in SQL.
AUDIT_REWRITES = re.compile(
    r"disable\s+trigger"
    r"|\b(update|delete\s+from|truncate(\s+table)?)\s+(only\s+)?audit_(log|checkpoints)\b"
    r"|\bgrant\s[^;\"]*\b(update|delete|truncate|all)\b[^;\"]*\bon\s+(table\s+)?audit_"
    r"|\balter\s+table\s+audit_(log|checkpoints)\s+owner\b",
    re.IGNORECASE,
)


def test_no_code_path_changes_or_removes_an_audit_record() -> None:
    """The security page says no code path, for anyone, can modify or remove an audit record.
    The app role holds no such privilege (tests/audit/test_tamper.py); the owner's could be
    granted back, or its triggers disabled, by a statement it runs: none of the product's code
    (the app, its migrations, scripts and tools) holds one. The tests tamper on purpose, and
    the benchmark seeds its own throwaway chain, as a superuser."""
    paths = [
        p
        for folder in ("app", "migrations", "scripts", "tools")
        for p in (ROOT / folder).rglob("*.py")
    ]
    found = {
        f"{path.relative_to(ROOT)}:{text[: match.start()].count(chr(10)) + 1}": match.group(0)
        for path in paths
        for text in [path.read_text()]
        for match in AUDIT_REWRITES.finditer(text)
    }
    assert len(paths) > 100, paths  # the product's code was read
    assert found == {}
    samples = [
        "alter table audit_log disable trigger audit_log_no_update_delete",
        "UPDATE audit_log SET details = '{}'",
        "delete from audit_checkpoints where seq > 3",
        "truncate table audit_log",
        "grant update on audit_log to coverproof_owner",
        "alter table audit_log owner to someone",
    ]
    assert [bool(AUDIT_REWRITES.search(sample)) for sample in samples] == [True] * len(samples)
    assert not AUDIT_REWRITES.search("grant select, insert on audit_log to coverproof_app")
