"""Every example in examples/ runs, so none can rot: real processes on real databases.

Each runnable example is copied to ``tmp_path`` and run there as its README says; the deploy
files (compose, Kubernetes) are checked for what they must say and, for Kubernetes, validated
against the API's schemas offline.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_validate
import pytest
import yaml
from conftest import PG_DSN
from procs import Server, api, free_port, until

import actorq

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FINISHED = {"succeeded", "dead", "cancelled"}


async def finished(base_url: str, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The task once it is finished, read over the API."""
    task: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal task
        task = await api("GET", f"{base_url}/api/v1/tasks/{task_id}")
        return task["state"] in FINISHED

    await until(done, timeout)
    return task


# -- hello: handlers served by `actorq serve --app` ---------------------------------------


@pytest.mark.slow
async def test_hello_handlers_served_by_actorq_serve(tmp_path: Path, servers: list[Server]) -> None:
    cwd = shutil.copytree(EXAMPLES / "hello", tmp_path / "hello")
    db = f"sqlite:///{tmp_path}/hello.db"
    server = Server.command(cwd, "serve", "hello", "--app", "tasks:app", "--database-url", db)
    servers.append(server)
    await server.ready()
    tasks = server.url + "/api/v1/tasks"

    greet = await api("POST", tasks, {"type": "greet", "payload": {"name": "Ada"}})
    check = await api("POST", tasks, {"type": "checksum", "payload": {"text": "abc"}})
    report = await api(
        "POST", tasks, {"type": "fetch_report", "payload": {"report": "q3", "ready_on_attempt": 3}}
    )
    export = await api("POST", tasks, {"type": "slow_export", "payload": {"seconds": 30}})

    greeted = await finished(server.url, greet["id"])
    assert (greeted["state"], greeted["result"]) == ("succeeded", {"greeting": "hello, Ada"})

    checked = await finished(server.url, check["id"])
    sha256_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert (checked["state"], checked["result"]) == ("succeeded", {"sha256": sha256_abc})

    reported = await finished(server.url, report["id"])
    assert reported["state"] == "succeeded"
    assert reported["result"] == {"report": "q3", "attempt": 3}
    history = await api("GET", f"{tasks}/{report['id']}/history")
    kinds = [event["kind"] for event in history["events"]]
    assert kinds.count("failed") == 2, kinds  # two failed attempts, each retried
    assert kinds[-1] == "succeeded"

    exported = await finished(server.url, export["id"])
    assert exported["state"] == "dead", "one attempt allowed, and it timed out"
    assert exported["attempt"] == 1
    assert "timed out after 2" in exported["error"]


# -- web_app.py: a web app enqueues, a worker runs ----------------------------------------


class WebApp:
    """``python web_app.py --port N`` in ``cwd``, the journal at ``database_url``."""

    def __init__(self, cwd: Path, database_url: str) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = cwd / "web_app.log"
        env = {**os.environ, "ACTORQ_DATABASE_URL": database_url}
        argv = [sys.executable, "web_app.py", "--port", self.url.rsplit(":", 1)[1]]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=log)

    async def ready(self) -> None:
        async def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{self.url}/health") as r:
                    return r.status == 404  # the app answers: no such route, and that's fine
            except aiohttp.ClientConnectionError:
                return False

        await until(up, 20)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path}/web.db"


@pytest.mark.slow
async def test_web_app_enqueues_and_answers_at_once_and_a_worker_runs_the_task(
    tmp_path: Path, shared_url: str, servers: list[Server]
) -> None:
    shutil.copy(EXAMPLES / "web_app.py", tmp_path)
    web_app = WebApp(tmp_path, shared_url)
    try:
        await web_app.ready()
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{web_app.url}/signup", json={"email": "ada@example.com"}) as r:
                assert r.status == 202, await r.text()
                task_id = (await r.json())["task_id"]
            async with s.get(f"{web_app.url}/signup/{task_id}") as r:
                assert (await r.json())["state"] == "queued", "no worker yet: it waits"
            async with s.post(f"{web_app.url}/signup", json={"name": "no email"}) as r:
                assert r.status == 400

            worker = Server.command(
                tmp_path, "worker", "mailer", "--app", "web_app:app", "--database-url", shared_url
            )
            servers.append(worker)

            status: dict[str, Any] = {}

            async def sent() -> bool:
                nonlocal status
                async with s.get(f"{web_app.url}/signup/{task_id}") as r:
                    status = await r.json()
                assert worker.proc.poll() is None, worker.log.read_text()
                return status["state"] in FINISHED

            await until(sent, 30)
            assert status == {
                "state": "succeeded", "result": {"sent_to": "ada@example.com"}, "error": None,
            }  # fmt: skip
    finally:
        web_app.stop()
    assert "Traceback" not in web_app.log.read_text()


# -- transactional.py: commit runs the task, rollback leaves no trace ----------------------


@pytest.mark.slow
@pytest.mark.postgres
async def test_transactional_enqueue_commit_runs_and_rollback_never_existed(
    tmp_path: Path, postgres_url: str
) -> None:
    shutil.copy(EXAMPLES / "transactional.py", tmp_path)
    env = {**os.environ, "DATABASE_URL": PG_DSN, "ACTORQ_DATABASE_URL": postgres_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "transactional.py", cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out = (await proc.communicate())[0].decode()
    assert proc.returncode == 0, out
    committed = re.search(r"^committed: task (\S+) succeeded: welcome, ada$", out, re.M)
    rolled_back = re.search(
        r"^rolled back: task (\S+) never existed, nor its user \(0\)$", out, re.M
    )
    assert committed, out
    assert rolled_back, out

    # Seen from outside: the journal holds the committed task and nothing of the other.
    async with actorq.App(database_url=postgres_url) as app:
        assert (await app.get(committed[1])).state is actorq.TaskState.SUCCEEDED
        with pytest.raises(actorq.TaskNotFound):
            await app.get(rolled_back[1])


# -- cluster: the compose file -------------------------------------------------------------


def test_cluster_compose_file_builds_the_repository_image_and_runs_every_role() -> None:
    # No Docker daemon (nor the compose plugin) where the tests run: check what the file says.
    compose = yaml.safe_load((EXAMPLES / "cluster" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert compose["volumes"] == {"pgdata": None}
    postgres = services.pop("postgres")
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    roles = {name: node["command"] for name, node in services.items()}
    assert roles == {
        "api-1": ["serve"], "api-2": ["serve"], "worker-1": ["worker"], "worker-2": ["worker"],
    }  # fmt: skip
    for node in services.values():
        context = (EXAMPLES / "cluster" / node["build"]["context"]).resolve()
        assert (context / node["build"]["dockerfile"]).is_file()
        assert (context / "pyproject.toml").is_file(), "the build context is the repository"
        env = node["environment"]
        assert env["ACTORQ_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["ACTORQ_DATABASE_URL"]
        actorq.Config.load(env={k: str(v) for k, v in env.items()})  # every setting is valid
        assert node["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["api-1"]["ports"] == ["8081:8080"]
    assert services["api-2"]["ports"] == ["8082:8080"]
    assert "ports" not in services["worker-1"]


# -- kubernetes: manifests validated offline -----------------------------------------------

KUBERNETES = EXAMPLES / "kubernetes"
# The oldest Kubernetes the manifests claim to fit; kubernetes-validate bundles its schemas.
KUBERNETES_VERSION = "1.29.0"


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """Every resource in examples/kubernetes/, by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


def test_kubernetes_manifests_are_valid_against_the_api_schemas() -> None:
    resources = manifests()
    assert set(resources) == {
        ("ConfigMap", "actorq-config"), ("Secret", "actorq-database"),
        ("Deployment", "actorq-serve"), ("Deployment", "actorq-worker"), ("Service", "actorq"),
    }  # fmt: skip
    for resource in resources.values():
        # strict: a misspelt or misplaced field is an error, not silently dropped
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_kubernetes_nodes_probe_health_and_ready_and_stop_within_their_grace(
    tmp_path: Path,
) -> None:
    resources = manifests()
    toml = tmp_path / "actorq.toml"
    toml.write_text(resources["ConfigMap", "actorq-config"]["data"]["actorq.toml"])
    config = actorq.Config.load(env={}, file=toml)  # unknown keys or wrong types would raise
    secret = resources["Secret", "actorq-database"]

    for name, role in (("actorq-serve", "serve"), ("actorq-worker", "worker")):
        deployment = resources["Deployment", name]
        pod = deployment["spec"]["template"]
        node = container(deployment)
        assert node["args"] == [role]
        env = {e["name"]: e for e in node["env"]}
        ref = env["ACTORQ_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
        (mount,) = node["volumeMounts"]
        assert env["ACTORQ_CONFIG"]["value"] == f"{mount['mountPath']}/actorq.toml"
        (volume,) = pod["spec"]["volumes"]
        assert volume["configMap"]["name"] == "actorq-config"
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= pod["metadata"]["labels"].items()
        )
        pre_stop = node.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        pre_stop_seconds = float(pre_stop[1]) if pre_stop else 0.0
        grace = pod["spec"]["terminationGracePeriodSeconds"]
        assert grace > pre_stop_seconds + config.shutdown_grace, name

    serve = container(resources["Deployment", "actorq-serve"])
    assert serve["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert serve["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert serve["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    (port,) = serve["ports"]
    env = {e["name"]: e.get("value") for e in serve["env"]}
    assert (port["name"], port["containerPort"]) == ("http", int(env["ACTORQ_PORT"]))
    assert env["ACTORQ_HOST"] == "0.0.0.0"

    service = resources["Service", "actorq"]
    serve_labels = resources["Deployment", "actorq-serve"]["spec"]["template"]["metadata"]
    worker_labels = resources["Deployment", "actorq-worker"]["spec"]["template"]["metadata"]
    selector = service["spec"]["selector"].items()
    assert selector <= serve_labels["labels"].items()
    assert not selector <= worker_labels["labels"].items(), "workers serve no HTTP"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
