"""Round-batched rollout vs a per-passage loop for the dependent SQuAD strategies, on a tiny CPU model.

The model is ``bench.answer_model``: the tiny model briefly trained to reply ``<answer>span</answer>``
and stop, so replies stop early and vary in length. Both arms run in one process on the same wrapped HF
model (lm-eval's HFLM) and the same plans, interleaved by ``bench.harness`` (ABBA..., ``--repeats``):

- batched: all passages' plans in one ``generate_until``: round k sends the k-th turn of every
  conversation as one batch (the layer's normal path);
- loop: one plan at a time, so each passage's turns run one after another (what ad-hoc scripts do).

It reports per strategy the harness table (wall and CPU median and range, per-repeat ratio), calls and
rounds (calls / rounds: the ceiling on a GPU, where a batch row costs about nothing), backend
``generate_until`` calls, the padding share of the batched decode, the time inside the model (split into
prefill, the forward passes over the prompts, and decode, one token at a time), and whether every run of
both arms produced the same replies.

    python -m bench.bench_rollout [--passages 40] [--repeats 5] [--max_gen_toks 48] [--batch_size 128]

``--api``: the same plans through lm-eval's ``local-chat-completions`` against a real ``transformers serve``
of a tiny model whose replies run to their token cap, each passage with its own cap (so reply lengths
vary), unless a stop string ends them (``--stop``; ``--eos`` makes the server itself end a reply there,
for continuous batching, which ignores stop strings), arms interleaved (ABAB...) for ``--repeats`` rounds:

- stream: the API path (barrier-free: a conversation sends its next turn when its reply arrives);
- rounds: round-batched (``QA_PACK_ROLLOUT=rounds``), both with ``--num_concurrent`` requests in flight;
- serial (``--arms stream,rounds,serial``): one conversation at a time.

    python -m bench.bench_rollout --api --passages 24 --repeats 5 --num_concurrent 8

``--api --simulated``: the same arms against an in-process stand-in for a server that serves
``--num_concurrent`` requests at once: each request sleeps ``--ms_per_token`` per reply token, its reply
length drawn from the prompt's hash out of the reply lengths measured on the real server (RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.answer_model import build_answer_model
from bench.harness import SMOKE_REPEATS, compare

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("QA_PACK_DATA_DIR", str(ROOT.parent / "shared" / "data"))


def _model(path: Path, batch_size: int):
    from lm_eval.api.registry import get_model
    from lm_eval.models.huggingface import HFLM

    from qa_tasks import rollout

    class CountingHFLM(HFLM):
        """HFLM that counts the generate_until batches it receives (the backend calls) and their time, and
        splits the model's forward passes into prefill (the prompt, more than one position) and decode."""

        calls, model_s, prefill_s, decode_s = 0, 0.0, 0.0, 0.0

        @classmethod
        def reset(cls) -> None:
            cls.calls, cls.model_s, cls.prefill_s, cls.decode_s = 0, 0.0, 0.0, 0.0

        @classmethod
        def snapshot(cls) -> dict:
            return {"calls": cls.calls, "model_s": cls.model_s, "prefill_s": cls.prefill_s, "decode_s": cls.decode_s}

        def generate_until(self, requests, disable_tqdm: bool = False):
            CountingHFLM.calls += 1
            started = time.perf_counter()
            try:
                return super().generate_until(requests, disable_tqdm=True)
            finally:
                CountingHFLM.model_s += time.perf_counter() - started

    assert get_model("hf") is not None  # the registry is loaded (and wrapped) like the CLI does
    lm = CountingHFLM(pretrained=str(path), device="cpu", batch_size=batch_size)
    forward = lm.model.forward

    def timed_forward(*args, **kwargs):
        started = time.perf_counter()
        try:
            return forward(*args, **kwargs)
        finally:
            ids = kwargs.get("input_ids", args[0] if args else None)
            phase = "prefill_s" if ids is not None and ids.shape[-1] > 1 else "decode_s"
            setattr(CountingHFLM, phase, getattr(CountingHFLM, phase) + time.perf_counter() - started)

    lm.model.forward = timed_forward  # nn.Module calls self.forward: generate's passes go through it
    return rollout.wrap(lm), CountingHFLM


def _requests(strategy: str, passages, max_gen_toks: int):
    from lm_eval.api.instance import Instance

    from qa_tasks import rollout, squad

    kwargs = {"until": ["\n\n"], "max_gen_toks": max_gen_toks, "do_sample": False}
    return [Instance("generate_until", {}, (rollout.plan_text("squad", squad.plan_args(strategy, p)), dict(kwargs)),
                     0, (f"squad_{strategy}", i, 1)) for i, p in enumerate(passages)]


def _sequential_requests(lm, passages, caps, stop):
    """squad_sequential requests as ``--apply_chat_template`` builds them for ``lm``."""
    from lm_eval.api.instance import Instance

    from qa_tasks import rollout, squad

    return [Instance("generate_until", {}, (
        lm.apply_chat_template([{"role": "user", "content": rollout.plan_text(
            "squad", squad.plan_args("sequential", p))}]),
        {"until": ["\n\n", *stop], "max_gen_toks": cap, "do_sample": False}), 0, ("squad_sequential", i, 1))
        for i, (p, cap) in enumerate(zip(passages, caps))]


def _arms(args, lm, requests) -> None:
    """Run the arms interleaved (bench.harness), check they agree, print medians and ranges."""

    def arm(name: str):
        def run() -> list:
            os.environ["QA_PACK_ROLLOUT"] = "rounds" if name == "rounds" else ""
            lm._concurrent = 1 if name == "serial" else args.num_concurrent
            out = [lm.generate_until([r])[0] for r in requests] if name == "serial" else lm.generate_until(requests)
            results = [json.loads(o) for o in out]
            for r in results:  # everything but timing must agree between arms
                r["rollout"].pop("latency_s")
                for c in r["rollout"]["calls"]:
                    c.pop("latency_s")
            return results
        return run

    names = args.arms.split(",")
    report = compare({n: arm(n) for n in names}, repeats=args.repeats, warmup=not args.smoke)
    reference = report.values(names[0])[0]
    for n in names:
        assert all(v == reference for v in report.values(n)), f"{n}: replies or accounting differ"
    calls = sum(len(r["rollout"]["calls"]) for r in reference)
    lengths = sorted(c["gen_tokens"] for r in reference for c in r["rollout"]["calls"])
    rounds = max(r["rollout"]["rounds"] for r in reference)
    print(f"{len(requests)} passages, {calls} calls, {rounds} rounds ({calls / rounds:.1f} requests per round), "
          f"num_concurrent {args.num_concurrent}; same replies and accounting in every run; reply tokens: "
          f"min {lengths[0]}, quartiles {[lengths[len(lengths) * q // 4] for q in (1, 3)]}, max {lengths[-1]}")
    for n in names[1:]:
        print(f"\n{n} / {names[0]}:")
        print(report.markdown(ratio=(n, names[0])))


# reply lengths (tokens) measured on the real server run recorded in RESULTS.md: min, quartiles, max
_MEASURED_LENGTHS = (2, 31, 65, 81, 99)


def _simulated_lm(args):
    """An lm-eval API-like model (``_concurrent``) serving up to num_concurrent requests at once; a
    request takes ms_per_token per reply token, its length drawn from its prompt's hash."""
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    from lm_eval.api.model import LM

    from qa_tasks import rollout

    class SimulatedServer(LM):
        _concurrent = args.num_concurrent

        def _one(self, request) -> str:
            h = zlib.crc32(str(request.args[0]).encode())
            lengths, quarter = _MEASURED_LENGTHS, h % 4  # uniform within one measured quartile range
            n = lengths[quarter] + (h >> 8) % (lengths[quarter + 1] - lengths[quarter] + 1)
            time.sleep(n * args.ms_per_token / 1000)
            return " ".join(f"w{(h >> i) % 50}" for i in range(n))

        def generate_until(self, requests, disable_tqdm: bool = False):
            with ThreadPoolExecutor(max_workers=self._concurrent) as pool:
                return list(pool.map(self._one, requests))

        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True):
            from lm_eval.models.api_models import JsonChatStr

            return JsonChatStr(json.dumps(chat_history))

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

    return rollout.wrap(SimulatedServer())


def api_main(args) -> None:
    """Barrier-free vs round-batched (vs one conversation at a time) against a real server."""
    import random

    from lm_eval.models.openai_completions import LocalChatCompletion

    from qa_tasks import rollout, squad
    from qa_tasks.testing import build_tiny_model
    from tests.toolkit.serve import serve

    if args.smoke:  # replies of at most 4 tokens: the smoke checks the pipeline, not the timing
        args.passages, args.repeats, args.caps = 2, SMOKE_REPEATS, "4"
    passages = squad.load_passages("validation", min_questions=3, max_questions=8)[: args.passages]
    caps = [random.Random(i).choice([int(c) for c in args.caps.split(",")]) for i in range(len(passages))]
    if args.simulated:
        lm = _simulated_lm(args)
        return _arms(args, lm, _sequential_requests(lm, passages, caps, args.stop))
    tmp = Path(tempfile.mkdtemp())
    # init scale 0.3: greedy replies are prompt-dependent text that never stops on "\n\n"
    path = args.model or build_tiny_model(tmp / "tiny", data_dir=os.environ["QA_PACK_DATA_DIR"], init_std=0.3)
    if args.eos:
        path = _ending_at(path, args.eos, tmp / "eos")
    with serve(path, tmp / "server.log", extra_args=tuple(args.server_args.split())) as base_url:
        lm = rollout.wrap(LocalChatCompletion(
            model=str(path), base_url=f"{base_url}/chat/completions", tokenizer_backend="huggingface",
            tokenizer=str(path), num_concurrent=args.num_concurrent, max_retries=3))
        _arms(args, lm, _sequential_requests(lm, passages, caps, args.stop))


def _ending_at(path: Path, texts: list[str], out: Path) -> Path:
    """A copy of the model whose generation config ends a reply at every vocabulary token holding one of
    ``texts``, so that a server which ignores stop strings (continuous batching) stops there by itself."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    for text in texts:
        if not any(text in t for t in vocab):  # a usage error: one line, exit 2
            print(f"error: --eos {text!r}: no token of the model's vocabulary holds it; give text the replies "
                  "contain, e.g. a digit", file=sys.stderr)
            raise SystemExit(2)
    shutil.copytree(path, out)
    config = GenerationConfig.from_pretrained(out)
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    config.eos_token_id = eos + sorted(i for t, i in vocab.items() if any(x in t for x in texts))
    config.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", action="store_true", help="barrier-free vs round-batched on a real server")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and one repeat: checks the command still runs, measures nothing")
    parser.add_argument("--train_steps", type=int, default=150, help="training steps of the answer model")
    parser.add_argument("--num_concurrent", type=int, default=8, help="--api: requests in flight")
    parser.add_argument("--arms", default="stream,rounds", help="--api: stream,rounds[,serial]")
    parser.add_argument("--simulated", action="store_true", help="--api: in-process stand-in server")
    parser.add_argument("--ms_per_token", type=float, default=2.0, help="--simulated: time per reply token")
    parser.add_argument("--server_args", default="", help="--api: more transformers serve options")
    parser.add_argument("--caps", default="4,8,16,32,64", help="--api: reply token caps, one drawn per passage")
    parser.add_argument("--stop", action="append", default=[],
                        help="--api: extra stop string (repeatable); one the replies hit at varied points "
                             "makes reply lengths vary within a conversation too")
    parser.add_argument("--eos", action="append", default=[],
                        help="--api: text whose vocabulary tokens end a reply at the server itself (repeatable); "
                             "with continuous batching, which ignores stop strings, it varies reply lengths "
                             "within a conversation")
    parser.add_argument("--passages", type=int, default=40)
    parser.add_argument("--max_gen_toks", type=int, default=48, help="per answer (the tasks' default)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: no OpenMP oversubscription on a shared machine; same for both arms)")
    parser.add_argument("--model", type=Path, default=None,
                        help="model folder (default: bench.answer_model, trained on the fly)")
    args = parser.parse_args()
    if args.api:
        return api_main(args)

    import torch

    from qa_tasks import squad

    torch.set_num_threads(args.threads)
    if args.smoke:
        args.passages, args.repeats, args.max_gen_toks, args.train_steps = 2, SMOKE_REPEATS, 8, 2
    path = args.model or build_answer_model(Path(tempfile.mkdtemp()) / "answer", steps=args.train_steps)
    lm, counter = _model(path, args.batch_size)
    # dev passages with 3..5 questions: the first --passages of the 132 that have at least 3
    passages = squad.load_passages("validation", min_questions=3, max_questions=5)[: args.passages]
    n_questions = sum(len(p.questions) for p in passages)
    print(f"{len(passages)} passages, {n_questions} questions; max_gen_toks {args.max_gen_toks}; HFLM batch_size "
          f"{args.batch_size}; torch threads {torch.get_num_threads()}; model {path}")

    for strategy in ("sequential", "collab"):
        requests = _requests(strategy, passages, args.max_gen_toks)

        def batched(requests=requests):
            counter.reset()
            return [json.loads(r) for r in lm.generate_until(requests)], counter.snapshot()

        def loop(requests=requests):
            counter.reset()
            return [json.loads(lm.generate_until([r])[0]) for r in requests], counter.snapshot()

        report = compare({"round-batched": batched, "per-passage loop": loop}, repeats=args.repeats)
        (ref, acc_b), (_, acc_l) = report.values("round-batched")[0], report.values("per-passage loop")[0]
        same = all(a["output"]["replies"] == b["output"]["replies"] for v in report.values("round-batched")
                   + report.values("per-passage loop") for a, b in zip(ref, v[0]))
        calls = sum(len(r["rollout"]["calls"]) for r in ref)
        rounds = max(r["rollout"]["rounds"] for r in ref)
        gen = [c["gen_tokens"] for r in ref for c in r["rollout"]["calls"]]
        print(f"\n### {strategy}\n")
        print(report.markdown(ratio=("per-passage loop", "round-batched")))
        print(f"- calls {calls}, rounds {rounds}: GPU ceiling estimate calls / rounds = {calls / rounds:.1f}x; "
              f"backend generate_until calls: batched {acc_b['calls']}, loop {acc_l['calls']}; same replies in "
              f"every run of both arms: {same}")
        print(f"- reply tokens: min {min(gen)}, median {statistics.median(gen)}, max {max(gen)}; "
              f"{sum(g >= args.max_gen_toks for g in gen)} of {len(gen)} hit the cap")
        print(f"- padding share of the batched arm's decode slots (rows x longest reply of each round): "
              f"{_padding_share(ref):.0%}")
        for arm, acc in (("round-batched", acc_b), ("per-passage loop", acc_l)):
            walls = report.wall(arm)
            print(f"- {arm}: inside the model's generate_until {acc['model_s']:.2f} s of "
                  f"{walls[0]:.2f} s (first repeat): forward passes over the prompts (prefill) "
                  f"{acc['prefill_s']:.2f} s, one token at a time (decode) {acc['decode_s']:.2f} s, the rest "
                  f"HF generate's own steps (sampling, stop criteria); outside it the rollout layer (plans, "
                  f"rendering, token counting)")


def _padding_share(results: list[dict]) -> float:
    """Share of decode slots the round-batched arm spends on rows that already stopped: per round,
    every row runs until the longest reply of the round is done (one HFLM batch per round here)."""
    rounds: dict[int, list[int]] = {}
    for r in results:
        for c in r["rollout"]["calls"]:
            rounds.setdefault(c["round"], []).append(c["gen_tokens"])
    slots = sum(len(g) * max(g) for g in rounds.values())
    return 1 - sum(sum(g) for g in rounds.values()) / slots if slots else 0.0

if __name__ == "__main__":
    main()
