"""SQL snippets the migrations share: the tenant predicate and the policy every firm table gets."""

TENANT = "(select nullif(current_setting('app.firm_id', true), '')::uuid)"
ACTOR = "(select nullif(current_setting('app.actor_id', true), '')::uuid)"


def force_rls(table: str, column: str = "firm_id") -> list[str]:
    """ENABLE + FORCE RLS on a firm table, with the tenant policy for reads and writes."""
    return [
        f"alter table {table} enable row level security",
        f"alter table {table} force row level security",
        f"create policy tenant_isolation on {table} "
        f"using ({column} = {TENANT}) with check ({column} = {TENANT})",
    ]
