"""A scripted lm-eval model for tests: outputs come from a responder, so scores are known exactly.

Registered as ``--model scripted`` only in processes started with ``tests/toolkit/site`` on
PYTHONPATH (see ``sitecustomize.py`` there). Model args:

- ``responder=module:factory`` (required): ``factory(**other_args)`` returns an object with
  ``generate(context, gen_kwargs) -> str`` and/or ``loglikelihood(context, continuation) -> float``;
- ``log=PATH`` (optional): every request and answer is appended to PATH as JSON lines, so tests can
  assert on the prompts the model really received; ``batch`` numbers the ``generate_until`` call
  (1, 2, ...) that carried a generation request;
- ``created=PATH`` (optional): the file is written when the model is constructed, so tests can check
  that a run stopped before any model loaded.

A responder with a ``tokenizer`` attribute lends it to the model (``ScriptedLM.tokenizer``), so the rollout
layer counts reply tokens as it does for a real model; without one the model has no local tokenizer.
"""

from __future__ import annotations

import importlib
import json

from lm_eval.api.model import LM

__all__ = ["ScriptedLM", "load_responder", "one_line_error"]


def load_responder(spec: str, **kwargs):
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)(**kwargs)


def one_line_error(proc) -> str:
    """The single ``error:`` line of a finished lm_eval process that stopped with exit code 2 (the pack's
    usage-error contract); fails the test when there is a traceback or more than one such line."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return errors[0]


class ScriptedLM(LM):
    def __init__(self, responder: str, log: str | None = None, created: str | None = None, **kwargs) -> None:
        super().__init__()
        if created:
            with open(created, "w", encoding="utf-8") as f:
                f.write("constructed\n")
        kwargs = {k: v for k, v in kwargs.items() if k not in ("batch_size", "max_batch_size", "device")}
        self.responder = load_responder(responder, **kwargs)
        self.log_path = log
        self.generate_calls = 0  # number of generate_until batches, for round counting

    @property
    def tokenizer_name(self) -> str:
        return "scripted-chatml"

    @property
    def tokenizer(self):
        """The responder's tokenizer when it has one (e.g. the math responder's ``tokenizer=PATH``), so the rollout
        layer counts reply tokens as with a real model; otherwise absent, like an API model without a local one."""
        found = getattr(self.responder, "tokenizer", None)
        if found is None:
            raise AttributeError("tokenizer")
        return found

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat_history)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def _log(self, kind: str, request, answer, **extra) -> None:
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": kind, "args": request, "answer": answer, **extra}, default=str) + "\n")

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        self.generate_calls += 1
        outputs = []
        for request in requests:
            context, gen_kwargs = request.args
            answer = self.responder.generate(context, gen_kwargs)
            self._log("generate_until", [context, gen_kwargs], answer, batch=self.generate_calls)
            outputs.append(answer)
        return outputs

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        outputs = []
        for request in requests:
            context, continuation = request.args
            score = float(self.responder.loglikelihood(context, continuation))
            self._log("loglikelihood", [context, continuation], score)
            outputs.append((score, False))
        return outputs

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError("the scripted test model does not score rolling loglikelihoods")
