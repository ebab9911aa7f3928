"""`make lab` as a reader uses it: the server starts, opens chapter 01, runs its first code cell.

The test talks to JupyterLab's server through its REST API and a kernel websocket, as the
browser would, then stops the server by its PID and checks that no process is left behind.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

websocket = pytest.importorskip("websocket")  # websocket-client, a jupyter_server dependency

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "chapters/01_tokenizer.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base: str, token: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}", data=data, method="GET" if body is None else "POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def wait_until_ready(base: str, token: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"make lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            api(base, token, "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within 180 s:\n{log.read_text()[-3000:]}")


def first_code_cell(notebook: dict) -> dict:
    """The first code cell that runs something (cells of `#|` directives only are skipped)."""
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        code = [line for line in source.splitlines() if line.strip() and not line.startswith("#|")]
        if cell["cell_type"] == "code" and code:
            return cell
    raise AssertionError(f"{CHAPTER} has no code cell")


def execute(ws_url: str, code: str, timeout: float = 120) -> tuple[str, str]:
    """Run `code` in the kernel behind `ws_url`; return (reply status, stdout text)."""
    ws = websocket.create_connection(ws_url, timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": uuid.uuid4().hex, "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        stdout, status, idle = [], None, False
        deadline = time.monotonic() + timeout
        while (status is None or not idle) and time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout":
                stdout.append(msg["content"]["text"])
            elif kind == "error":
                stdout.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                status = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        return status, "".join(stdout)
    finally:
        ws.close()


def server_pid(runtime: Path, port: int) -> int:
    for info in runtime.glob("jpserver-*.json"):
        data = json.loads(info.read_text())
        if data.get("port") == port:
            return data["pid"]
    raise AssertionError(f"no jpserver-*.json for port {port} in the runtime folder")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_lab_opens_chapter_01_and_runs_its_first_code_cell(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    runtime, log = tmp_path / "runtime", tmp_path / "lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime),
           "GPT2SCRATCH_DATA_MIRROR": os.environ.get("GPT2SCRATCH_DATA_MIRROR",
                                                     str(ROOT.parent / "shared" / "data"))}
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "lab", f"LAB_PORT={port}", f"LAB_TOKEN={token}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base, token, proc, log)
        assert f"127.0.0.1:{port}/lab?token=" in log.read_text()  # the link readers open
        session = api(base, token, "/api/sessions", {
            "path": CHAPTER, "type": "notebook", "name": Path(CHAPTER).name,
            "kernel": {"name": "python3"},
        })
        notebook = api(base, token, f"/api/contents/{CHAPTER}?content=1")["content"]
        cell = first_code_cell(notebook)
        ws_url = (f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels"
                  f"?token={token}")
        status, stdout = execute(ws_url, "".join(cell["source"]))
        assert status == "ok", stdout
        stored = "".join("".join(o.get("text", "")) for o in cell["outputs"]
                         if o.get("output_type") == "stream")
        assert stdout == stored, (stdout, stored)  # the same lines the book shows
        pid = server_pid(runtime, port)
    finally:
        try:
            os.kill(server_pid(runtime, port), signal.SIGTERM)
        except (AssertionError, ProcessLookupError, FileNotFoundError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            if group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGKILL)
    assert pid != proc.pid  # the server is make's child: stopping it by PID ends make too
    deadline = time.monotonic() + 30
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not group_alive(proc.pid), "a process of `make lab` (server or kernel) survived"
