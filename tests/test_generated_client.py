"""A partner app built only from the OpenAPI document, as its developer would build it:
``openapi-python-client generate`` on ``/schema/openapi.json``, then a scenario that uses
nothing but the generated functions and models against a real server (SPEC §3, issue 12).
And, where Node.js is installed, ``openapi-typescript`` + ``tsc --strict`` on a normal body."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.conftest import CI
from tests.servers import create_admin_key, running_server
from timebank.app import create_app
from timebank.config import Settings

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / ".venv" / "bin" / "openapi-python-client"
PACKAGE = "timebank_partner_client"
# Pinned as a partner developer would pin them; installed into a cache folder of the tests.
NPM_PACKAGES = ["openapi-typescript@7.13.0", "typescript@5.9.3"]
NPM_CACHE = ROOT / "tests" / ".cache" / "ts"
# The two ways README's "For partner-app developers" shows (hey-api 0.90 runs on Node >= 20.19)
CLIENT_PACKAGES = [
    "openapi-typescript@7.13.0",
    "typescript@5.9.3",
    "openapi-fetch@0.17.0",
    "@hey-api/openapi-ts@0.90.8",
]
CLIENT_CACHE = ROOT / "tests" / ".cache" / "ts-clients"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``/schema/openapi.json`` as the service serves it."""
    db = tmp_path_factory.mktemp("doc") / "doc.db"
    with TestClient(create_app(Settings(database_url=f"sqlite+aiosqlite:///{db}"))) as c:
        r = c.get("/schema/openapi.json")
        assert r.status_code == 200
    path = db.parent / "openapi.json"
    path.write_text(r.text)
    return path


@pytest.fixture(scope="module")
def generated(document: Path) -> Iterator[ModuleType]:
    """The generated client package, importable as :data:`PACKAGE`."""
    out = document.parent / "client"
    config = document.parent / "generator.yaml"
    config.write_text("post_hooks: []\n")
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(out / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # every schema, body and response understood (the XLSX downloads and the sheet upload
    # too): openapi-python-client writes its warnings to stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def call(module: str, **kwargs: Any) -> Any:
    """``sync_detailed`` of a generated operation module: the response with its headers."""
    return importlib.import_module(f"{PACKAGE}.api.{module}").sync_detailed(**kwargs)


def test_a_partner_app_written_only_with_the_generated_client(
    generated: ModuleType, db_url: str, tmp_path: Path
) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    with running_server(db_url, tmp_path, workers=1) as server:
        admin_secret = create_admin_key(db_url, tmp_path)

        def as_key(secret: str) -> Any:
            return generated.AuthenticatedClient(base_url=server.base_url, token=secret)

        admin = as_key(admin_secret)
        slug = f"partner-{uuid.uuid4().hex[:8]}"
        r = call(
            "time_banks.create_timebank",
            client=admin,
            body=models.TimeBankCreate(slug=slug, name="Partner test"),
        )
        assert r.status_code == 201, r.content
        assert r.headers["location"] == f"/v1/timebanks/{slug}"
        broker = as_key(
            call(
                "api_keys.create_api_key",
                tb=slug,
                client=admin,
                body=models.ApiKeyCreate(role=models.Role.BROKER, label="broker"),
            ).parsed.secret
        )

        # the broker registers two members and gives each a key for the partner app
        people = {}
        for name in ("Ann", "Bob"):
            member = call(
                "members.create_member",
                tb=slug,
                client=broker,
                body=models.MemberCreate(display_name=name, locality="Irvine"),
            ).parsed
            assert isinstance(member, models.MemberCreated), member
            assert member.warnings == []  # nobody else has the name
            key = call(
                "api_keys.create_api_key",
                tb=slug,
                client=broker,
                body=models.ApiKeyCreate(role=models.Role.MEMBER, member_id=member.id),
            ).parsed
            people[name] = (member, as_key(key.secret))
        (ann, ann_app), (bob, bob_app) = people["Ann"], people["Bob"]

        # Ann's app finds Bob in the directory, following the cursors page by page
        seen: list[Any] = []
        cursor = importlib.import_module(f"{PACKAGE}.types").UNSET
        while True:
            page = call("members.get_directory", tb=slug, client=ann_app, limit=1, cursor=cursor)
            assert page.status_code == 200, page.content
            seen += page.parsed.items
            if not page.parsed.next_cursor:
                break
            cursor = page.parsed.next_cursor
        bob_id = next(e.id for e in seen if e.display_name == "Bob")
        category = call("categories.list_categories", tb=slug, client=ann_app).parsed.items[0]

        # a proposal with an Idempotency-Key; the retry replays it
        proposal = models.SimpleExchangeCreate(
            provider=models.MemberParty(member_id=ann.id),
            recipient=models.MemberParty(member_id=bob_id),
            minutes=90,
            category=category.slug,
            description="Walked the dog",
        )
        first = call(
            "exchanges.create_exchange",
            tb=slug,
            client=ann_app,
            body=proposal,
            idempotency_key="ann-1",
        )
        retry = call(
            "exchanges.create_exchange",
            tb=slug,
            client=ann_app,
            body=proposal,
            idempotency_key="ann-1",
        )
        assert first.status_code == retry.status_code == 201, first.content
        assert first.parsed.status == models.ExchangeStatus.PENDING
        assert retry.headers["idempotent-replayed"] == "true"
        assert retry.parsed.id == first.parsed.id

        # Bob confirms; both balances move
        done = call(
            "exchanges.confirm_exchange", tb=slug, exchange_id=first.parsed.id, client=bob_app
        )
        assert done.parsed.status == models.ExchangeStatus.RECORDED, done.content
        assert done.parsed.kind == models.ExchangeKind.P2P
        balance = call(
            "members.get_member_balance", tb=slug, member_id=ann.id, client=ann_app
        ).parsed
        assert balance.balance_minutes == 90

        # the statement, as JSON and as CSV
        statement = call(
            "members.get_member_statement", tb=slug, member_id=ann.id, client=ann_app
        ).parsed
        assert [e.minutes for e in statement.items] == [90]
        as_csv = call("members.get_member_statement_csv", tb=slug, member_id=ann.id, client=ann_app)
        assert as_csv.status_code == 200
        rows = as_csv.content.decode("utf-8-sig").splitlines()
        assert rows[0].startswith("time_bank,") and rows[4] == ""
        assert rows[5].startswith("row,") and rows[6].startswith("opening_balance")
        assert rows[-1].startswith("closing_balance") and rows[-1].endswith(",90,1.50,,,,,")

        # a proposal over Bob's limit stays pending; confirming it is refused, and the
        # problem's code is read as the enum
        over = call(
            "exchanges.create_exchange",
            tb=slug,
            client=ann_app,
            body=models.SimpleExchangeCreate(
                provider=models.MemberParty(member_id=ann.id),
                recipient=models.MemberParty(member_id=bob_id),
                minutes=600,
                category=category.slug,
            ),
        ).parsed
        refused = call("exchanges.confirm_exchange", tb=slug, exchange_id=over.id, client=bob_app)
        assert refused.status_code == 409, refused.content
        assert refused.parsed.code == models.ProblemCode.BALANCE_LIMIT_EXCEEDED
        assert refused.parsed.detail.startswith(f"Bob (member {bob_id}) would go to")

        # cancelling with no body
        pending = call(
            "exchanges.create_exchange",
            tb=slug,
            client=ann_app,
            body=models.SimpleExchangeCreate(
                provider=models.MemberParty(member_id=ann.id),
                recipient=models.MemberParty(member_id=bob_id),
                minutes=30,
                category=category.slug,
            ),
        ).parsed
        cancelled = call(
            "exchanges.cancel_exchange", tb=slug, exchange_id=pending.id, client=ann_app
        )
        assert cancelled.status_code == 200, cancelled.content
        assert cancelled.parsed.status == models.ExchangeStatus.CANCELLED

        # the broker reads a report as JSON and as CSV, published figures chosen by the enum
        report = call(
            "reports.get_report",
            tb=slug,
            name="summary",
            client=broker,
            figures=models.Figures.EXACT,
        )
        assert report.status_code == 200, report.content
        assert report.parsed.report == "summary"
        as_csv = call("reports.get_report_csv", tb=slug, name="summary", client=broker)
        assert as_csv.status_code == 200 and b"definitions_version" in as_csv.content

        # a group exchange (a class) through the other form of the same operation
        group = call(
            "exchanges.create_exchange",
            tb=slug,
            client=broker,
            body=models.GroupExchangeCreate(
                providers=[models.GroupLeg(party=models.MemberParty(member_id=bob.id), minutes=60)],
                recipients=[
                    models.GroupLeg(party=models.MemberParty(member_id=ann.id), minutes=60)
                ],
                category=category.slug,
            ),
        )
        assert group.status_code == 201, group.content
        assert group.parsed.status == models.ExchangeStatus.RECORDED


TYPESCRIPT_BODY = """
import type { components, paths } from "./api";

type Create = paths["/v1/timebanks/{tb}/exchanges"]["post"];
const simple: components["schemas"]["SimpleExchangeCreate"] = {
  provider: { member_id: "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21" },
  recipient: { member_id: "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40" },
  minutes: 90,
  category: "gardening",
};
const body: Create["requestBody"]["content"]["application/json"] = simple;
const member: components["schemas"]["MemberCreate"] = { display_name: "Alex" };
const patch: components["schemas"]["MemberPatch"] = { locality: "Irvine" };
const batch: components["schemas"]["BatchRequest"] = { exchanges: [simple] };
const code: components["schemas"]["ProblemCode"] = "balance_limit_exceeded";
export { body, member, patch, batch, code };
"""


def test_typescript_types_generated_from_the_document_compile_a_normal_body(
    document: Path, tmp_path: Path
) -> None:
    npm = shutil.which("npm")
    if npm is None:
        if CI:
            pytest.fail("CI=true but npm is missing: .ci/run installs Node.js")
        pytest.skip("Node.js (npm) is not installed: the TypeScript check needs it")
    bin_dir = NPM_CACHE / "node_modules" / ".bin"
    if not (bin_dir / "tsc").exists() or not (bin_dir / "openapi-typescript").exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        (NPM_CACHE / "package.json").write_text(json.dumps({"private": True}))
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", *NPM_PACKAGES],
            cwd=NPM_CACHE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    types = tmp_path / "api.d.ts"
    done = subprocess.run(
        [str(bin_dir / "openapi-typescript"), str(document), "-o", str(types)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (tmp_path / "body.ts").write_text(TYPESCRIPT_BODY)
    done = subprocess.run(
        [str(bin_dir / "tsc"), "--strict", "--noEmit", "--target", "es2020", "body.ts"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# A partner app as README shows it, with openapi-typescript + openapi-fetch: /v1/me, a
# proposal, a refusal read by its code (the limit fields typed), the list filters.
FETCH_APP = """import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Exchange = components["schemas"]["ExchangeOut"];

export async function partnerApp(baseUrl: string, key: string): Promise<Exchange[]> {
  const api = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });
  const me = await api.GET("/v1/me");
  if (me.error) throw new Error(me.error.detail);
  const { member_id, timebanks } = me.data;
  const tb = timebanks[0];
  if (member_id === undefined || tb === undefined) throw new Error("not a member key");
  const proposed = await api.POST("/v1/timebanks/{tb}/exchanges", {
    params: { path: { tb } },
    body: { provider: { member_id }, recipient: { member_id }, minutes: 60, category: "transport" },
  });
  if (proposed.error) {
    const problem = proposed.error;
    if (problem.code === "balance_limit_exceeded") {
      const whose: string | undefined = problem.party?.type;
      const balance: number | undefined = problem.balance_minutes;
      console.log(whose, balance);
    } else if (problem.code === "validation_error") {
      for (const { field, message } of problem.errors) console.log(field, message);
    }
    return [];
  }
  const expires: string | undefined = proposed.data.expires_at;
  console.log(expires, proposed.data.created_at, proposed.data.updated_at);
  const changed = await api.GET("/v1/timebanks/{tb}/exchanges", {
    params: {
      path: { tb },
      query: { proposed_by: "me", sort: "-created_at", updated_since: "2026-11-28T09:30:00Z" },
    },
  });
  if (changed.error) throw new Error(changed.error.detail);
  for (const ex of changed.data.items) {
    if (ex.decided_by) console.log(ex.decided_by.type, ex.decided_by.name, ex.recorded_at);
  }
  const statement = await api.GET("/v1/timebanks/{tb}/members/{member_id}/statement", {
    params: { path: { tb, member_id } },
  });
  if (statement.data) console.log(statement.data.resume_cursor);
  return changed.data.items;
}
"""

# The same with @hey-api/openapi-ts (its fetch client), imports ending in .js for ES modules.
HEY_APP = """import { client } from "./hey/client.gen.js";
import { createExchange, getMe, listExchanges, type ExchangeOut } from "./hey/index.js";

export async function partnerApp(baseUrl: string, key: string): Promise<ExchangeOut[]> {
  // the key goes with every operation the document says needs it: all but /health, /ready
  client.setConfig({ baseUrl, auth: () => key });
  const me = await getMe();
  if (me.error || !me.data) throw new Error("no key");
  const { member_id, timebanks } = me.data;
  const tb = timebanks[0];
  if (member_id === undefined || tb === undefined) throw new Error("not a member key");
  const proposed = await createExchange({
    path: { tb },
    body: { provider: { member_id }, recipient: { member_id }, minutes: 60 },
  });
  if (proposed.error) {
    if (proposed.error.code === "balance_limit_exceeded") {
      const whose: string | undefined = proposed.error.party?.type;
      console.log(whose, proposed.error.min_balance_minutes);
    }
    return [];
  }
  const mine = await listExchanges({ path: { tb }, query: { proposed_by: "me" } });
  return mine.data?.items ?? [];
}
"""

HEY_CONFIG = """export default {
  input: "openapi.json",
  output: { path: "hey", importFileExtension: ".js" },
  plugins: ["@hey-api/client-fetch"],
};
"""


def _npm_tools(packages: list[str], cache: Path, tools: list[str]) -> Path:
    """The ``node_modules/.bin`` of ``packages``, installed once into ``cache``."""
    npm = shutil.which("npm")
    if npm is None:
        if CI:
            pytest.fail("CI=true but npm is missing: .ci/run installs Node.js")
        pytest.skip("Node.js (npm) is not installed: the TypeScript check needs it")
    bin_dir = cache / "node_modules" / ".bin"
    if not all((bin_dir / tool).exists() for tool in tools):
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "package.json").write_text(json.dumps({"private": True}))
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", *packages],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    return bin_dir


def test_typescript_partner_apps_with_openapi_fetch_and_hey_api_compile(
    document: Path, tmp_path: Path
) -> None:
    """Both of README's TypeScript ways generate from the document and compile, strict, as
    ES modules: /v1/me's ids, a refusal's code narrowing its fields, the list filters."""
    bin_dir = _npm_tools(CLIENT_PACKAGES, CLIENT_CACHE, ["tsc", "openapi-typescript", "openapi-ts"])
    (tmp_path / "node_modules").symlink_to(CLIENT_CACHE / "node_modules")
    (tmp_path / "package.json").write_text(json.dumps({"type": "module", "private": True}))
    shutil.copy(document, tmp_path / "openapi.json")
    (tmp_path / "openapi-ts.config.mjs").write_text(HEY_CONFIG)
    (tmp_path / "fetch-app.ts").write_text(FETCH_APP)
    (tmp_path / "hey-app.ts").write_text(HEY_APP)
    for command in (
        [str(bin_dir / "openapi-typescript"), "openapi.json", "-o", "api.d.ts"],
        [str(bin_dir / "openapi-ts")],
    ):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    # hey-api attaches the key to every operation the document says needs one
    sdk = (tmp_path / "hey" / "sdk.gen.ts").read_text()
    for operation in ("createExchange", "getMemberBalance", "getMe"):
        declared = sdk.split(f"export const {operation} =", 1)[1].split("export const", 1)[0]
        assert "security:" in declared, operation
    done = subprocess.run(
        [
            str(bin_dir / "tsc"),
            "--strict",
            "--noEmit",
            "--target",
            "es2022",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            "fetch-app.ts",
            "hey-app.ts",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
