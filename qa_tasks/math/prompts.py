"""The r1_zero prompt builders, shared by the eval tasks, finetune.sft and finetune.grpo."""

from __future__ import annotations

# The R1-Zero / CS336 prompt for base models; the response continues after the final "<think>".
R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.\nUser: {question}\nAssistant: <think>"
)
# The same contract for instruct models, as one user turn rendered by the model's chat template.
CHAT_INSTRUCTION = (
    "{question}\n\nFirst think about the reasoning process, then give the answer. Enclose the reasoning "
    "in <think> </think> tags and the final answer in <answer> </answer> tags, exactly like this: "
    "<think> reasoning process here </think> <answer> answer here </answer>"
)
# --- prompts: the single builder used by the eval tasks and by finetune ---------------------------

def r1_zero_prompt(question: str) -> str:
    """Base-model prompt; ends with ``Assistant: <think>`` so the model writes the reasoning next."""
    return R1_ZERO_PROMPT.format(question=question.strip())


def chat_messages(question: str) -> list[dict]:
    """Instruct-model variant: one user turn, rendered by the model's chat template."""
    return [{"role": "user", "content": CHAT_INSTRUCTION.format(question=question.strip())}]


def r1_zero_completion(reasoning: str, answer: str) -> str:
    """What follows ``r1_zero_prompt`` in a correct response (the gold completion for fine-tuning)."""
    return f" {reasoning.strip()} </think> <answer> {answer.strip()} </answer>"


def chat_completion(reasoning: str, answer: str) -> str:
    """The assistant turn of a correct response to ``chat_messages`` (it opens its own <think>)."""
    return f"<think> {reasoning.strip()} </think> <answer> {answer.strip()} </answer>"


