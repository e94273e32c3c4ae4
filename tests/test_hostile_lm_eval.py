"""Hostile input on the paths through ``lm_eval`` that the pack's hook guards: each is one ``error:`` line,
the right exit code (2: usage, checked before any model loads; 1: a fault during the run), no traceback,
and no results file that looks complete.

The misbehaving servers are real HTTP servers on loopback (``http.server``) answering every request with
HTTP 500 or with an HTML page; a closed port is a port nothing listens on.
"""

from __future__ import annotations

import contextlib
import http.server
import threading

import pytest

from qa_tasks.harness.api_endpoint import describe_failure
from tests.toolkit.env import lm_eval_env
from tests.toolkit.lm_eval_runs import run_lm_eval
from tests.toolkit.serve import free_port

pytestmark = pytest.mark.heavy(order=8)


class _Answer(http.server.BaseHTTPRequestHandler):
    status, content_type, body = 500, "application/json", b'{"detail": "boom"}'

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(self.body)

    def log_message(self, *args):
        pass


class _Html(_Answer):
    status, content_type, body = 200, "text/html", b"<html><body>a web page</body></html>"


@pytest.fixture(scope="module")
def servers():
    """``{"500": url, "html": url, "closed": url}``: base URLs of the misbehaving servers and a closed port."""
    running, urls = [], {"closed": f"http://127.0.0.1:{free_port()}/v1"}
    for name, handler in (("500", _Answer), ("html", _Html)):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append(server)
        urls[name] = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield urls
    for server in running:
        server.shutdown()


def _api(model: str, server: str, endpoint: str, extra: str = "") -> list[str]:
    # one attempt: lm-eval's retries (1 s, 2 s apart) end in the same exception
    args = f"model=m,base_url={server}/{endpoint},tokenizer_backend=None,max_retries=1{extra}"
    if model == "local-completions":
        args += ",tokenized_requests=False"
    return ["--model", model, "--model_args", args]


CHAT = ("local-chat-completions", "chat/completions")
TEXT = ("local-completions", "completions")

# (id, lm_eval arguments (SERVER: a key of ``servers``, TINY: the tiny model), exit code, the error line's start)
CASES = [
    ("limit-0", ["--model", "hf", "--model_args", "pretrained=TINY", "--tasks", "recipe_mpr_gen", "--limit", "0"],
     2, "error: --limit 0: give a number of documents"),
    ("limit-negative", ["--model", "hf", "--model_args", "pretrained=TINY", "--tasks", "squad_v1", "--limit", "-2"],
     2, "error: --limit -2: give a number of documents"),
    ("metadata-bad-json", ["--model", "hf", "--model_args", "pretrained=TINY", "--tasks", "recipe_mpr_gen",
                           "--limit", "1", "--metadata", "{bad"], 2, "error: Invalid JSON: {bad."),
    ("closed-port", [*_api(TEXT[0], "SERVER:closed", TEXT[1]), "--tasks", "recipe_mpr_gen", "--limit", "2"],
     2, "error: base_url=http://127.0.0.1:"),
    ("url-without-scheme", ["--model", "local-completions", "--model_args",
                            "model=m,base_url=127.0.0.1:8000/v1/completions,tokenizer_backend=None",
                            "--tasks", "recipe_mpr_gen", "--limit", "2"],
     2, "error: base_url=127.0.0.1:8000/v1/completions is not an http(s) URL"),
    ("url-bad-port", ["--model", "local-completions", "--model_args",
                      "model=m,base_url=http://127.0.0.1:99999/v1/completions,tokenizer_backend=None",
                      "--tasks", "recipe_mpr_gen", "--limit", "2"], 2, "error: base_url=http://127.0.0.1:99999"),
    ("chat-without-template", [*_api(CHAT[0], "SERVER:500", CHAT[1]), "--tasks", "recipe_mpr_gen", "--limit", "2"],
     2, "error: --model local-chat-completions sends chat messages"),
    ("server-500", [*_api(TEXT[0], "SERVER:500", TEXT[1]), "--tasks", "recipe_mpr_gen", "--limit", "2"],
     1, "error: the server at http://127.0.0.1:"),
    ("server-500-concurrent", [*_api(CHAT[0], "SERVER:500", CHAT[1], ",num_concurrent=2"), "--apply_chat_template",
                               "--tasks", "recipe_mpr_gen", "--limit", "2"], 1, "error: the server at http://127.0.0.1:"),
    ("server-500-rollout", [*_api(TEXT[0], "SERVER:500", TEXT[1]), "--tasks", "squad_collab", "--limit", "2"],
     1, "error: the server at http://127.0.0.1:"),
    ("server-html", [*_api(TEXT[0], "SERVER:html", TEXT[1]), "--tasks", "recipe_mpr_gen", "--limit", "2"],
     1, "error: the server at http://127.0.0.1:"),
    ("server-html-concurrent", [*_api(CHAT[0], "SERVER:html", CHAT[1], ",num_concurrent=2"), "--apply_chat_template",
                                "--tasks", "gsm8k_think_chat", "--limit", "2"], 1, "error: the server at http://127.0.0.1:"),
]


def _fill(args: list[str], servers: dict, tiny_model) -> list[str]:
    out = []
    for a in args:
        for key, url in servers.items():
            a = a.replace(f"SERVER:{key}", url)
        out.append(a.replace("TINY", str(tiny_model)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_run_is_one_line(args, code, line, servers, tiny_model, tmp_path):
    out = tmp_path / "out"
    proc, results = run_lm_eval(["run", *_fill(args, servers, tiny_model)], output=out, check=False, timeout=300)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == code and len(errors) == 1 and errors[0].startswith(line), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and results is None
    if "SERVER:html" in args:
        assert "did not answer with JSON" in errors[0]


@pytest.mark.slow
def test_debug_verbosity_keeps_the_whole_traceback(servers):
    proc, _ = run_lm_eval(["run", *_api(TEXT[0], servers["500"], TEXT[1]), "--tasks", "recipe_mpr_gen",
                           "--limit", "1", "--verbosity", "DEBUG"], check=False, timeout=300)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "HTTPError" in proc.stderr


@pytest.mark.slow
def test_pack_error_without_the_hook_is_one_line(tiny_model):
    """With the startup hook switched off and the pack's tasks named through --include_path, the pack's own
    error (no rollout layer) is still its one line and exit 2."""
    from qa_tasks.harness.task_index import tasks_dir

    proc, _ = run_lm_eval(["run", "--model", "hf", "--model_args", f"pretrained={tiny_model}", "--tasks",
                           "squad_collab", "--include_path", str(tasks_dir()), "--limit", "1"],
                          env=lm_eval_env(QA_PACK_DISABLE_HOOK="1"), check=False, timeout=300)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and "needs the rollout layer of lm-eval-qa-pack" in errors[0]


def _raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    try:
        raise exc from cause
    except BaseException as e:  # noqa: BLE001
        return e


def test_failures_that_are_not_requests_keep_lm_evals_traceback():
    assert describe_failure(ValueError("a task's own bug"), "http://h/v1") is None
    assert describe_failure(_raised(KeyError("choices"), ValueError("x")), "http://h/v1") is None


def test_a_failed_request_deep_in_the_chain_is_found():
    import requests

    inner = requests.exceptions.ConnectionError("Max retries exceeded with url: /v1/completions")
    fault = describe_failure(_raised(RuntimeError("tenacity gave up"), inner), "http://h:1/v1/completions")
    assert fault is not None and fault.exit_code == 1
    assert str(fault).startswith("the request to http://h:1/v1/completions failed (Max retries exceeded")
