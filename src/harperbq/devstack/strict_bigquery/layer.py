"""Hook the strict rules into a bqemulator process, through the emulator's own seams:

- the query-job helpers of its jobs routes (`execute_query_job`, `_execute_query_or_failed_meta`,
  `_build_dry_run_query_response`): statistics, `maximumBytesBilled`, streaming-buffer DML;
- its gRPC read handler class (a subclass): row-restriction complexity, estimated bytes;
- its FastAPI app (an ASGI middleware): which tables received streamed rows, and when;
- its snapshot manager's `record_change` (called after every commit): the change history that
  `APPENDS`/`CHANGES` read (changes.py).

`install()` must run before the server starts (the gRPC server and the app are built then).
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any

import pyarrow as pa
from sqlglot import exp

from harperbq.devstack.strict_bigquery import billing, changes, rules

log = logging.getLogger("harperbq.strict_bigquery")

BLOCK_BYTES_ENV = "HARPERBQ_STRICT_BQ_BLOCK_BYTES"

STREAMING = rules.StreamingLog()
CHANGELOG = changes.ChangeLog()
READ_RESPONSE_BYTES = 4 * 1024 * 1024
_AS_OF: contextvars.ContextVar[str | None] = contextvars.ContextVar("as_of", default=None)
"""The relation a Storage Read session with `snapshot_time` reads instead of its table."""
_ESTIMATE: contextvars.ContextVar[billing.Estimate | None] = contextvars.ContextVar(
    "strict_estimate", default=None
)
_installed = False


def block_bytes() -> int:
    raw = os.environ.get(BLOCK_BYTES_ENV, "")
    return int(raw) if raw.strip() else billing.DEFAULT_BLOCK_BYTES


def _layout(ctx: Any, key: tuple[str, str, str]) -> billing.Layout | None:
    from bqemulator.storage.sql_identifiers import quoted_schema

    try:
        meta = ctx.catalog.get_table(*key)
    except Exception:  # an unknown dataset raises in some repositories
        return None
    if meta is None or meta.table_type != "TABLE":
        return None

    def conv(f: Any) -> billing.Field:
        return billing.Field(f.name, f.type.upper(), f.mode, tuple(conv(c) for c in f.fields))

    tp = meta.time_partitioning
    return billing.Layout(
        relation=f'{quoted_schema(key[0], key[1])}."{key[2]}"',
        fields=tuple(conv(f) for f in meta.schema_.fields),
        partition_field=tp.field if tp is not None else None,
        partition_type=tp.type if tp is not None else "DAY",
        clustering=tuple(meta.clustering.fields) if meta.clustering is not None else (),
    )


def estimate(
    project_id: str, bq_sql: str, query_params: Any, ctx: Any
) -> tuple[Any, billing.Estimate]:
    """(parsed statement or None, its bytes); unparseable SQL bills nothing here."""
    try:
        statement = billing.parse(changes.prepare_sql(bq_sql))
    except billing.BillingError:
        return None, billing.Estimate()
    layouts: dict[tuple[str, str, str], billing.Layout] = {}
    try:
        rewritten = rewrite_changes(project_id, statement, query_params, ctx)
    except changes.ChangeHistoryError:
        return statement, billing.Estimate()  # the execution reports the error
    if rewritten is not None:
        statement = rewritten.billed
        layouts.update(rewritten.layouts)
    for scan in billing.scans(statement, project_id):
        if scan.name in layouts:
            continue
        found = _layout(ctx, scan.name)
        if found is not None:
            layouts[scan.name] = found
    con = ctx.engine.connection.cursor()
    try:
        result = billing.estimate(
            con,
            statement,
            layouts,
            billing.rest_params(query_params),
            project_id,
            block_bytes=block_bytes(),
        )
    except Exception as exc:  # never fail a job because the cost model cannot cost it
        log.warning("strict billing could not cost a statement: %s", exc)
        result = billing.Estimate()
    finally:
        con.close()
    return statement, result


class Rewritten:
    """A statement's change-history calls replaced: `executed` reads the log's rows of each
    range; `billed` reads the log table itself, whose layout bills only the range's writes."""

    def __init__(self) -> None:
        self.executed: exp.Expr | None = None
        self.billed: exp.Expr = exp.Null()
        self.layouts: dict[tuple[str, str, str], billing.Layout] = {}


def _table_meta(ctx: Any, key: tuple[str, str, str], kind: str) -> Any:
    try:
        meta = ctx.catalog.get_table(*key)
    except Exception:  # an unknown dataset raises in some repositories
        meta = None
    if meta is None:
        raise changes.ChangeHistoryError(f"Not found: Table {key[0]}:{key[1]}.{key[2]}")
    if meta.table_type != "TABLE":
        # https://cloud.google.com/bigquery/docs/reference/standard-sql/time-series-functions#appends
        raise changes.ChangeHistoryError(
            f"{kind} requires a regular BigQuery table; {'.'.join(key)} is a {meta.table_type}"
        )
    return meta


def _record(ctx: Any, key: tuple[str, str, str]) -> None:
    """Log the table's change since its last commit (the emulator's write lock is held)."""
    from bqemulator.storage.sql_identifiers import quoted_table_ref

    try:
        meta = ctx.catalog.get_table(*key)
    except Exception:
        return
    if meta is None or meta.table_type != "TABLE":
        return
    con = ctx.engine.connection.cursor()
    try:
        CHANGELOG.record(con, key, quoted_table_ref(*key), meta.creation_time, ctx.clock.now)
    finally:
        con.close()


def rewrite_changes(
    project_id: str, statement: exp.Expr, query_params: Any, ctx: Any
) -> Rewritten | None:
    """Replace `APPENDS`/`CHANGES` calls by the log (None when there are none); raises
    ChangeHistoryError for what BigQuery refuses."""
    found = changes.calls(statement, project_id)
    if not found:
        return None
    out = Rewritten()
    billed = statement.copy()
    billed_calls = changes.calls(billed, project_id)
    now = ctx.clock.now()
    params = billing.rest_params(query_params)
    for call, twin in zip(found, billed_calls, strict=True):
        meta = _table_meta(ctx, call.key, call.kind)
        # Writes the emulator did not report (a script's statements) are logged now, late
        # rather than never; with nothing unreported this logs no row.
        _record(ctx, call.key)
        lo, hi = changes.check_range(
            call.kind,
            ".".join(call.key),
            CHANGELOG.history(call.key, meta.creation_time),
            changes.evaluate(call.start, params, now),
            changes.evaluate(call.end, params, now),
            now,
        )
        schema, table = CHANGELOG.relation(call.key, meta.creation_time)
        columns = [f.name for f in meta.schema_.fields]
        call.node.replace(changes.log_subquery(call, (schema, table), columns, lo, hi))
        alias = twin.node.args.get("alias")
        plain = exp.Table(
            this=exp.to_identifier(table, quoted=True),
            db=exp.to_identifier(schema, quoted=True),
            catalog=exp.to_identifier(project_id, quoted=True),
            alias=alias.copy()
            if alias is not None
            else exp.TableAlias(this=exp.to_identifier(call.key[2])),
        )
        twin.node.replace(plain)
        layout = _layout(ctx, call.key)
        if layout is not None:
            out.layouts[(project_id, schema, table)] = billing.Layout(
                relation=changes.range_relation(schema, table, lo, hi),
                fields=layout.fields,
            )
    out.executed = statement
    out.billed = billed
    return out


def _rewrite_sql(project_id: str, bq_sql: str, query_params: Any, ctx: Any) -> str:
    """The SQL the emulator runs: change-history calls read the log (errors as BigQuery's)."""
    from bqemulator.domain.errors import InvalidQueryError

    prepared = changes.prepare_sql(bq_sql)
    if prepared is bq_sql and not any(k in bq_sql.upper() for k in changes.KINDS):
        return bq_sql
    try:
        statement = billing.parse(prepared)
        rewritten = rewrite_changes(project_id, statement, query_params, ctx)
    except billing.BillingError:
        return bq_sql
    except changes.ChangeHistoryError as exc:
        raise InvalidQueryError(str(exc)) from None
    if rewritten is None or rewritten.executed is None:
        return bq_sql
    return rewritten.executed.sql(dialect="bigquery")


def _alter_schema(bq_sql: str, project_id: str, ctx: Any) -> bool:
    """`ALTER SCHEMA ... SET OPTIONS` fails in the emulator (DuckDB has no such statement):
    True when the layer handles it (only the time-travel window is kept, other options are
    dropped)."""
    from bqemulator.domain.errors import NotFoundError

    found = changes.dataset_time_travel(bq_sql, project_id)
    if found is None or changes.ALTER_SCHEMA.match(bq_sql) is None:
        return False
    (project, dataset), _ = found
    if ctx.catalog.get_dataset(project, dataset) is None:
        raise NotFoundError(f"Not found: Dataset {project}:{dataset}")
    return True


def _after_ddl(statement: Any, bq_sql: str, project_id: str, ctx: Any) -> None:
    """Track the change-history options DDL sets, and log what CREATE TABLE wrote."""
    travel = changes.dataset_time_travel(bq_sql, project_id)
    if travel is not None:
        CHANGELOG.set_time_travel(*travel)
    if statement is None:
        return
    found = changes.ddl_options(statement, project_id)
    if found is not None:
        key, options = found
        CHANGELOG.set_options(key, options, reset=isinstance(statement, exp.Create))
        if isinstance(statement, exp.Create):
            _record(ctx, key)
    elif isinstance(statement, exp.Drop) and isinstance(statement.this, exp.Table):
        con = ctx.engine.connection.cursor()
        try:
            target = statement.this
            if str(statement.args.get("kind", "")).upper() == "SCHEMA":
                CHANGELOG.forget_dataset(target.catalog or project_id, target.name, con)
            else:
                CHANGELOG.forget(billing.table_key(target, project_id), con)
        finally:
            con.close()


def _attach(statistics: MutableMapping[str, Any], est: billing.Estimate, *, dry: bool) -> None:
    processed = est.upper_bound if dry else est.processed
    query = statistics.setdefault("query", {})
    query["totalBytesProcessed"] = str(processed)
    query["totalBytesBilled"] = "0" if dry else str(est.billed())
    query["billingTier"] = 1
    query["estimatedBytesProcessed"] = str(est.upper_bound)
    statistics["totalBytesProcessed"] = str(processed)


def _streaming_guard(statement: Any, project_id: str) -> None:
    from bqemulator.domain.errors import InvalidQueryError

    target = billing.dml_target(statement, project_id) if statement is not None else None
    if target is not None and STREAMING.recent(target):
        kind = type(statement).__name__.upper()
        raise InvalidQueryError(rules.streaming_dml_message(".".join(target), kind))


def _max_bytes(raw: Any) -> int | None:
    """`maximumBytesBilled` is an int64 (as a JSON string): anything else is a bad request."""
    from bqemulator.domain.errors import ValidationError

    if raw is None:
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValidationError(
            "Invalid value at 'job.configuration.query.maximum_bytes_billed' "
            f'(TYPE_INT64), "{raw}"'
        ) from None


def _wrap_jobs() -> None:
    from bqemulator.api.routes import jobs as routes

    original_execute = getattr(routes, "execute_query_job")  # noqa: B009
    original_or_failed = routes._execute_query_or_failed_meta
    original_dry = routes._build_dry_run_query_response

    async def execute_query_job(
        project_id: str,
        job_id: str,
        bq_sql: str,
        query_params: Any,
        ctx: Any,
        **kwargs: Any,
    ) -> Any:
        est = _ESTIMATE.get()
        statement = None
        if est is None:
            statement, est = estimate(project_id, bq_sql, query_params, ctx)
        else:
            try:
                statement = billing.parse(bq_sql)
            except billing.BillingError:
                statement = None
        _streaming_guard(statement, project_id)
        run_sql = _rewrite_sql(project_id, bq_sql, query_params, ctx)
        alter_schema = _alter_schema(bq_sql, project_id, ctx)
        if alter_schema:
            run_sql = "SELECT 1 AS done LIMIT 0"  # the emulator cannot run it; we keep it
        meta = await original_execute(project_id, job_id, run_sql, query_params, ctx, **kwargs)
        if alter_schema:
            meta.statistics.setdefault("query", {})["statementType"] = "ALTER_SCHEMA"
        _attach(meta.statistics, est, dry=False)
        if meta.state == "DONE" and not getattr(meta, "error_result", None):
            _after_ddl(statement, bq_sql, project_id, ctx)
        if isinstance(statement, exp.Drop | exp.Create) and isinstance(statement.this, exp.Table):
            STREAMING.forget(billing.table_key(statement.this, project_id))  # a new table
        return meta

    async def execute_or_failed(**kwargs: Any) -> Any:
        project_id = kwargs["project_id"]
        _, est = estimate(project_id, kwargs["bq_sql"], kwargs["query_params"], kwargs["ctx"])
        limit = _max_bytes(kwargs["query_config"].get("maximumBytesBilled"))
        billed = est.billed()
        if limit is not None and billed > limit:
            # https://cloud.google.com/bigquery/docs/best-practices-costs#limit_query_costs_by_restricting_the_number_of_bytes_billed
            meta = routes._failed_job_meta(
                project_id=project_id,
                job_id=kwargs["job_id"],
                job_type="QUERY",
                config=kwargs["config"],
                error_result={
                    "reason": "bytesBilledLimitExceeded",
                    "message": (
                        f"Query exceeded limit for bytes billed: {int(limit)}. "
                        f"{billed} or higher required."
                    ),
                },
                now=kwargs["ctx"].clock.now(),
            )
            _attach(meta.statistics, billing.Estimate(), dry=False)
            return meta
        token = _ESTIMATE.set(est)
        try:
            return await original_or_failed(**kwargs)
        finally:
            _ESTIMATE.reset(token)

    async def dry_run(**kwargs: Any) -> Any:
        _, est = estimate(
            kwargs["project_id"], kwargs["bq_sql"], kwargs["query_params"], kwargs["ctx"]
        )
        kwargs["bq_sql"] = _rewrite_sql(
            kwargs["project_id"], kwargs["bq_sql"], kwargs["query_params"], kwargs["ctx"]
        )
        response = await original_dry(**kwargs)
        _attach(response.setdefault("statistics", {}), est, dry=True)
        return response

    original_handle = routes._handle_query_job

    async def handle_query_job(project_id: str, job_id: str, *args: Any, **kwargs: Any) -> Any:
        # Job ids are unique in a project: a second insert is refused, never run again.
        # https://cloud.google.com/bigquery/docs/running-jobs#generate-jobid
        ctx = kwargs.get("ctx")
        if ctx is not None and ctx.catalog.get_job(project_id, job_id) is not None:
            from bqemulator.domain.errors import AlreadyExistsError

            raise AlreadyExistsError(f"Already Exists: Job {project_id}:{job_id}")
        return await original_handle(project_id, job_id, *args, **kwargs)

    setattr(routes, "_handle_query_job", handle_query_job)  # noqa: B010
    setattr(routes, "execute_query_job", execute_query_job)  # noqa: B010
    setattr(routes, "_execute_query_or_failed_meta", execute_or_failed)  # noqa: B010
    setattr(routes, "_build_dry_run_query_response", dry_run)  # noqa: B010


# Over the size caps on purpose: one hook per emulator read seam, kept together so none is missed.
def _wrap_reads() -> None:  # noqa: C901
    import grpc
    from bqemulator.grpc_api import read_servicer
    from google.cloud.bigquery_storage_v1 import types

    base = read_servicer.BigQueryReadHandler

    class StrictReadHandler(base):  # type: ignore[misc, valid-type]
        """Refuses complex row restrictions; reports bytes scanned after partition pruning."""

        def _handle_create_read_session(self, request_bytes: bytes, context: Any) -> bytes:
            request = types.CreateReadSessionRequest.deserialize(request_bytes)
            options = request.read_session.read_options
            restriction = options.row_restriction if options else ""
            try:
                rules.check_row_restriction(restriction)
            except rules.TooComplexError as exc:
                context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
                context.set_details(str(exc))
                return b""
            try:
                relation = self._as_of(request.read_session)
            except changes.ChangeHistoryError as exc:
                context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
                context.set_details(str(exc))
                return b""
            token = _AS_OF.set(relation)
            try:
                out: bytes = super()._handle_create_read_session(request_bytes, context)
            finally:
                _AS_OF.reset(token)
            if not out:
                return out
            session = types.ReadSession.deserialize(out)
            session.estimated_total_bytes_scanned = self._scanned(request.read_session)
            return bytes(types.ReadSession.serialize(session))

        def _as_of(self, read_session: Any) -> str | None:
            """With `table_modifiers.snapshot_time`, the table as it was then (from the change
            log), after BigQuery's checks: within the time-travel window, not before the
            table's creation, not in the future. None without one.
            https://cloud.google.com/bigquery/docs/reference/storage/rpc/google.cloud.bigquery.storage.v1#tablemodifiers
            """
            modifiers = read_session.table_modifiers
            if not modifiers or not modifiers.snapshot_time:
                return None
            at = modifiers.snapshot_time
            match = re.fullmatch(
                r"projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", read_session.table
            )
            if match is None:
                return None
            key = (match.group(1), match.group(2), match.group(3))
            meta = _table_meta(self._ctx, key, "A read with snapshot_time")
            _record(self._ctx, key)
            now = self._ctx.clock.now()
            history = CHANGELOG.history(key, meta.creation_time)
            earliest = max(meta.creation_time, now - timedelta(hours=history.time_travel_hours))
            if at > now:
                raise changes.ChangeHistoryError(
                    f"snapshot_time {at.isoformat()} is in the future (now {now.isoformat()})"
                )
            if at < earliest:
                raise changes.ChangeHistoryError(
                    f"Invalid snapshot time {at.isoformat()} for table {'.'.join(key)}: "
                    f"cannot read before {earliest.isoformat()} (the table's creation or "
                    f"its time-travel window of {history.time_travel_hours} hours)"
                )
            schema, table = CHANGELOG.relation(key, meta.creation_time)
            return changes.as_of_relation(schema, table, at)

        def _scanned(self, read_session: Any) -> int:
            # Storage Read bills the selected columns of the partitions left after pruning;
            # rows dropped by the restriction are still billed.
            # https://cloud.google.com/bigquery/pricing#data_extraction_pricing
            match = re.fullmatch(
                r"projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", read_session.table
            )
            if match is None:
                return 0
            key = (match.group(1), match.group(2), match.group(3))
            layout = _layout(self._ctx, key)
            if layout is None:
                return 0
            options = read_session.read_options
            fields = list(options.selected_fields) if options else []
            restriction = options.row_restriction if options else ""
            where = billing.parse(restriction) if restriction.strip() else None
            columns = {f.lower() for f in fields} if fields else None
            if columns is not None and where is not None:
                columns |= {c.name.lower() for c in where.find_all(exp.Column)}
            con = self._ctx.engine.connection.cursor()
            try:
                upper, _ = billing.scan_bytes(
                    con, layout, columns, where, key[2], {}, block_bytes=block_bytes()
                )
            finally:
                con.close()
            return upper

    original_stream_data = getattr(read_servicer, "get_stream_data")  # noqa: B009

    def stream_data(session_name: str, stream_name: str) -> Any:
        # BigQuery sends a stream in responses of a few MB; the emulator slices 65 536 rows a
        # response, which for wide rows passes gRPC's message limit. Chunks of at most
        # READ_RESPONSE_BYTES keep every response under it (`to_batches` never merges chunks).
        table = original_stream_data(session_name, stream_name)
        if table is None or table.num_rows == 0:
            return table
        per_row = max(1, table.nbytes // table.num_rows)
        rows = max(1, READ_RESPONSE_BYTES // per_row)
        return pa.Table.from_batches(table.to_batches(max_chunksize=rows), schema=table.schema)

    setattr(read_servicer, "get_stream_data", stream_data)  # noqa: B010
    original_sql = read_servicer._build_read_sql

    def build_read_sql(target_ref: str, *args: Any, **kwargs: Any) -> str:
        relation = _AS_OF.get()
        return original_sql(relation or target_ref, *args, **kwargs)

    setattr(read_servicer, "_build_read_sql", build_read_sql)  # noqa: B010
    setattr(read_servicer, "BigQueryReadHandler", StrictReadHandler)  # noqa: B010


_TABLE_PATH = re.compile(
    r"/bigquery/v2/projects/(?P<p>[^/]+)/datasets/(?P<d>[^/]+)/tables/(?P<t>[^/]+)(?P<rest>/insertAll)?/?$"
)

ASGIApp = Callable[..., Awaitable[None]]


class StreamingTracker:
    """ASGI middleware: records successful insertAll calls; a dropped table forgets them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = _TABLE_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        method = scope.get("method", "")
        if match is None or not (
            (method == "POST" and match.group("rest"))
            or (method == "DELETE" and not match.group("rest"))
        ):
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, capture)
        key = (match.group("p"), match.group("d"), match.group("t"))
        if status and status[0] < 300:
            if method == "POST":
                STREAMING.streamed(key)
            else:
                STREAMING.forget(key)
                _forget_logs(scope, lambda con: CHANGELOG.forget(key, con))


_DATASET_PATH = re.compile(r"/bigquery/v2/projects/(?P<p>[^/]+)/datasets(?:/(?P<d>[^/]+))?/?$")


class DatasetOptionsTracker:
    """ASGI middleware: the `maxTimeTravelHours` of datasets inserted or patched over REST
    (the emulator does not keep it); change history reads its window from it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = _DATASET_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        method = scope.get("method", "")
        body: list[bytes] = []
        status: list[int] = []
        if match is not None and method == "DELETE" and match.group("d"):
            await self.app(scope, receive, _status_of(send, status))
            project, dataset = match.group("p"), match.group("d")
            if status and status[0] < 300:
                _forget_logs(scope, lambda con: CHANGELOG.forget_dataset(project, dataset, con))
            return
        if match is not None and method == "GET" and match.group("d"):
            hours = CHANGELOG.time_travel_hours.get((match.group("p"), match.group("d").lower()))
            if hours is not None:
                await self.app(scope, receive, _with_field(send, "maxTimeTravelHours", str(hours)))
                return
        if match is None or method not in ("POST", "PATCH", "PUT"):
            await self.app(scope, receive, send)
            return

        async def tee() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        await self.app(scope, tee, _status_of(send, status))
        if status and status[0] < 300:
            _dataset_options(match.group("p"), match.group("d"), b"".join(body))


def _with_field(send: Any, name: str, value: Any) -> Callable[[Any], Awaitable[None]]:
    """`send` for a JSON resource, with `name` set in a successful response (a dataset's
    `maxTimeTravelHours` set by DDL, which the emulator's REST resource does not show)."""
    import json

    start: list[Any] = []
    body: list[bytes] = []

    async def keep(message: Any) -> None:
        if message["type"] == "http.response.start":
            start.append(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body.append(message.get("body", b""))
        if message.get("more_body"):
            return
        raw = b"".join(body)
        head = dict(start[0])
        if int(head["status"]) < 300:
            try:
                resource = json.loads(raw)
                resource[name] = value
                raw = json.dumps(resource).encode()
            except ValueError:
                pass
        head["headers"] = [
            (k, str(len(raw)).encode() if k.lower() == b"content-length" else v)
            for k, v in head.get("headers", [])
        ]
        await send(head)
        await send({"type": "http.response.body", "body": raw})

    return keep


def _status_of(send: Any, status: list[int]) -> Callable[[Any], Awaitable[None]]:
    """`send`, noting the response status in `status`."""

    async def keep(message: Any) -> None:
        if message["type"] == "http.response.start":
            status.append(int(message["status"]))
        await send(message)

    return keep


def _forget_logs(scope: Any, forget: Callable[[Any], None]) -> None:
    """Drop the logs of deleted tables, through the emulator's context on the app."""
    try:
        ctx = scope["app"].state.context
        con = ctx.engine.connection.cursor()
    except Exception:  # no context: forget the options, leave the tables
        forget(None)
        return
    try:
        forget(con)
    except Exception as exc:
        log.warning("strict change history could not drop a log: %s", exc)
    finally:
        con.close()


def _dataset_options(project: str, dataset: str | None, raw: bytes) -> None:
    import json

    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    name = dataset or body.get("datasetReference", {}).get("datasetId")
    if not name or "maxTimeTravelHours" not in body:
        return
    hours = body.get("maxTimeTravelHours")
    CHANGELOG.set_time_travel((project, name), int(hours) if hours is not None else None)


def _wrap_app() -> None:
    from bqemulator import server

    original = getattr(server, "create_app")  # noqa: B009

    def create_app(context: Any) -> Any:
        app = original(context)
        app.add_middleware(StreamingTracker)
        app.add_middleware(DatasetOptionsTracker)
        return app

    setattr(server, "create_app", create_app)  # noqa: B010


def _wrap_commits() -> None:
    from bqemulator.versioning import snapshots

    manager = snapshots.SnapshotManager
    original = manager.record_change

    def record_change(self: Any, project_id: str, dataset_id: str, table_id: str) -> Any:
        out = original(self, project_id, dataset_id, table_id)
        ctx = _CommitContext(self)
        try:
            _record(ctx, (project_id, dataset_id, table_id))
        except Exception as exc:  # never fail a write because the history cannot log it
            log.warning("strict change history could not log a commit: %s", exc)
        return out

    setattr(manager, "record_change", record_change)  # noqa: B010


class _CommitContext:
    """The parts of the app context `_record` needs, from a snapshot manager."""

    def __init__(self, manager: Any) -> None:
        self.catalog = manager._catalog
        self.engine = manager._engine
        self.clock = manager._clock


def install() -> None:
    """Layer the strict rules on the emulator (idempotent); call before it starts."""
    global _installed
    if _installed:
        return
    _wrap_jobs()
    _wrap_reads()
    _wrap_app()
    _wrap_commits()
    _installed = True
