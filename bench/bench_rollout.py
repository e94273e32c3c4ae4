"""Round-batched rollout vs a per-passage loop for the dependent SQuAD strategies, on the tiny CPU model.

Both arms run in one process on the same wrapped HF model (lm-eval's HFLM) and the same plans:

- batched: all passages' plans in one ``generate_until``: round k sends the k-th turn of every
  conversation as one batch (the layer's normal path);
- loop: one plan at a time, so each passage's turns run one after another (what ad-hoc scripts do).

It reports wall times, their ratio, backend ``generate_until`` calls against rounds and Σ questions,
whether both arms produced the same replies, and PromptTok_API per question of every strategy
(all counted with the tiny model's tokenizer).

    python bench/bench_rollout.py [--passages 100] [--max_gen_toks 48] [--batch_size 128] [--threads 1]

``--api``: the same plans through lm-eval's ``local-chat-completions`` against a real ``transformers serve``
of a tiny model whose replies always run to their token cap, each passage with its own cap (so reply
lengths vary), arms interleaved (ABAB...) for ``--repeats`` rounds:

- stream: the API path (barrier-free: a conversation sends its next turn when its reply arrives);
- rounds: round-batched (``QA_PACK_ROLLOUT=rounds``), both with ``--num_concurrent`` requests in flight;
- serial (``--arms stream,rounds,serial``): one conversation at a time.

    PYTHONPATH=. python bench/bench_rollout.py --api --passages 24 --repeats 5 --num_concurrent 8

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("QA_PACK_DATA_DIR", str(ROOT.parent / "shared" / "data"))


def _model(path: Path, batch_size: int):
    from lm_eval.api.registry import get_model
    from lm_eval.models.huggingface import HFLM

    from qa_tasks import rollout

    class CountingHFLM(HFLM):
        """HFLM that counts the generate_until batches it receives (the backend calls)."""

        calls = 0

        def generate_until(self, requests, disable_tqdm: bool = False):
            CountingHFLM.calls += 1
            return super().generate_until(requests, disable_tqdm=True)

    assert get_model("hf") is not None  # the registry is loaded (and wrapped) like the CLI does
    return rollout.wrap(CountingHFLM(pretrained=str(path), device="cpu", batch_size=batch_size)), CountingHFLM


def _requests(strategy: str, passages, max_gen_toks: int):
    from lm_eval.api.instance import Instance

    from qa_tasks import rollout, squad

    kwargs = {"until": ["\n\n"], "max_gen_toks": max_gen_toks, "do_sample": False}
    return [Instance("generate_until", {}, (rollout.plan_text("squad", squad.plan_args(strategy, p)), dict(kwargs)),
                     0, (f"squad_{strategy}", i, 1)) for i, p in enumerate(passages)]


def _spread(values: list[float]) -> str:
    values = sorted(values)
    return f"{statistics.median(values):.2f} [{values[0]:.2f}, {values[-1]:.2f}]"


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
    """Run the arms interleaved, check they agree, print medians and ranges."""

    def run(arm: str) -> tuple[float, list]:
        os.environ["QA_PACK_ROLLOUT"] = "rounds" if arm == "rounds" else ""
        lm._concurrent = 1 if arm == "serial" else args.num_concurrent
        start = time.perf_counter()
        out = [lm.generate_until([r])[0] for r in requests] if arm == "serial" else lm.generate_until(requests)
        wall = time.perf_counter() - start
        results = [json.loads(o) for o in out]
        for r in results:  # everything but timing must agree between arms
            r["rollout"].pop("latency_s")
            for c in r["rollout"]["calls"]:
                c.pop("latency_s")
        return wall, results

    arms = args.arms.split(",")
    run(arms[0])  # warm-up: model load, first-request costs
    walls: dict[str, list[float]] = {a: [] for a in arms}
    reference = None
    for rep in range(args.repeats):
        for arm in arms if rep % 2 == 0 else arms[::-1]:  # ABBA... interleaving
            wall, results = run(arm)
            walls[arm].append(wall)
            reference = reference or results
            assert results == reference, f"{arm}: replies or accounting differ from the first arm"
        print(f"repeat {rep + 1}: " + ", ".join(f"{a} {walls[a][-1]:.2f} s" for a in arms)
              + f"; load {os.getloadavg()[0]:.1f}", flush=True)
    calls = sum(len(r["rollout"]["calls"]) for r in reference)
    lengths = sorted(c["gen_tokens"] for r in reference for c in r["rollout"]["calls"])
    rounds = max(r["rollout"]["rounds"] for r in reference)
    print(f"{len(requests)} passages, {calls} calls, {rounds} rounds ({calls / rounds:.1f} requests per round), "
          f"num_concurrent {args.num_concurrent}; same replies and accounting in every run; reply tokens: "
          f"min {lengths[0]}, quartiles {[lengths[len(lengths) * q // 4] for q in (1, 3)]}, max {lengths[-1]}")
    for arm in arms:
        print(f"{arm}: wall s median [min, max] {_spread(walls[arm])}")
    for arm in arms[1:]:
        print(f"{arm} / {arms[0]} per repeat: {_spread([b / a for a, b in zip(walls[arms[0]], walls[arm])])}")


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

    passages = squad.load_passages("validation", min_questions=3, max_questions=8)[: args.passages]
    caps = [random.Random(i).choice([int(c) for c in args.caps.split(",")]) for i in range(len(passages))]
    if args.simulated:
        lm = _simulated_lm(args)
        return _arms(args, lm, _sequential_requests(lm, passages, caps, args.stop))
    tmp = Path(tempfile.mkdtemp())
    # init scale 0.3: greedy replies are prompt-dependent text that never stops on "\n\n"
    path = args.model or build_tiny_model(tmp / "tiny", data_dir=os.environ["QA_PACK_DATA_DIR"], init_std=0.3)
    with serve(path, tmp / "server.log", extra_args=tuple(args.server_args.split())) as base_url:
        lm = rollout.wrap(LocalChatCompletion(
            model=str(path), base_url=f"{base_url}/chat/completions", tokenizer_backend="huggingface",
            tokenizer=str(path), num_concurrent=args.num_concurrent, max_retries=3))
        _arms(args, lm, _sequential_requests(lm, passages, caps, args.stop))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", action="store_true", help="barrier-free vs round-batched on a real server")
    parser.add_argument("--repeats", type=int, default=5, help="--api: interleaved repeats")
    parser.add_argument("--num_concurrent", type=int, default=8, help="--api: requests in flight")
    parser.add_argument("--arms", default="stream,rounds", help="--api: stream,rounds[,serial]")
    parser.add_argument("--simulated", action="store_true", help="--api: in-process stand-in server")
    parser.add_argument("--ms_per_token", type=float, default=2.0, help="--simulated: time per reply token")
    parser.add_argument("--server_args", default="", help="--api: more transformers serve options")
    parser.add_argument("--caps", default="4,8,16,32,64", help="--api: reply token caps, one drawn per passage")
    parser.add_argument("--stop", action="append", default=[],
                        help="--api: extra stop string (repeatable); one the replies hit at varied points "
                             "makes reply lengths vary within a conversation too")
    parser.add_argument("--passages", type=int, default=100)
    parser.add_argument("--max_gen_toks", type=int, default=48, help="per answer (the tasks' default)")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: no OpenMP oversubscription on a shared machine; same for both arms)")
    parser.add_argument("--model", type=Path, default=None, help="tiny model folder (built when missing)")
    args = parser.parse_args()
    if args.api:
        return api_main(args)

    import torch

    from qa_tasks import squad
    from qa_tasks.testing import build_tiny_model

    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp()
    path = args.model or build_tiny_model(Path(tmp) / "tiny", data_dir=os.environ["QA_PACK_DATA_DIR"])
    lm, counter = _model(path, args.batch_size)
    # dev passages with 3..5 questions: 100 of the 132 that have at least 3
    passages = squad.load_passages("validation", min_questions=3, max_questions=5)[: args.passages]
    n_questions = sum(len(p.questions) for p in passages)
    print(f"{len(passages)} passages, {n_questions} questions, max {max(len(p.questions) for p in passages)} "
          f"per passage; max_gen_toks {args.max_gen_toks}; HFLM batch_size {args.batch_size}; "
          f"torch threads {torch.get_num_threads()}")

    report = {}
    for strategy in ("sequential", "collab"):
        requests = _requests(strategy, passages, args.max_gen_toks)
        counter.calls = 0
        start = time.perf_counter()
        batched = [json.loads(r) for r in lm.generate_until(requests)]
        t_batched, calls_batched = time.perf_counter() - start, counter.calls
        counter.calls = 0
        start = time.perf_counter()
        looped = [json.loads(lm.generate_until([r])[0]) for r in requests]
        t_loop, calls_loop = time.perf_counter() - start, counter.calls
        same = sum(a["output"]["replies"] == b["output"]["replies"] for a, b in zip(batched, looped))
        rounds = max(r["rollout"]["rounds"] for r in batched)
        report[strategy] = {"batched_s": round(t_batched, 2), "loop_s": round(t_loop, 2),
                            "speedup": round(t_loop / t_batched, 2), "backend_calls_batched": calls_batched,
                            "rounds": rounds, "backend_calls_loop": calls_loop,
                            "same_replies": f"{same}/{len(passages)}"}
        print(strategy, report[strategy], flush=True)

    # PromptTok_API per question, every strategy, batched, same tokenizer
    tokens = {}
    for strategy in squad.STRATEGIES:
        results = [json.loads(r) for r in lm.generate_until(_requests(strategy, passages, args.max_gen_toks))]
        api = sum(c["prompt_tokens"] for r in results for c in r["rollout"]["calls"])
        tokens[strategy] = round(api / n_questions, 1)
    print("PromptTok_API per question:", tokens)
    order = sorted(tokens, key=tokens.get)
    print("ordering:", " < ".join(order), "(expected all_in_one < batch < sequential < collab)")


if __name__ == "__main__":
    main()
