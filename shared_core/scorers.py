"""Cost and reward models backed by Hugging Face models, for real deployments.

- `SequenceClassifierCostModel` / `SequenceClassifierRewardModel`: any
  `AutoModelForSequenceClassification` (toxicity classifiers, reward models such as
  OpenAssistant's DeBERTa), with label or logit selection.
- `GuardLMCostModel`: a generative guard (Llama Guard 3, ShieldGemma, Granite Guardian style)
  scored as P(unsafe) from the next-token logits after the guard's chat template.
- `ScoreModelCostModel` / `ScoreModelRewardModel`: Beaver-style score models (a Llama decoder
  with a linear `score_head` on the last token), loaded by `load_score_model`.

Every scorer batches its inputs, truncates to `max_length` tokens and runs on the model's device.
Combine several cost models with `shared_core.scoring.MaxCostModel`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

logger = logging.getLogger(__name__)

Message = dict[str, Any]
MessageBuilder = Callable[[str, str], list[Message]]

BEAVER_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"
"""The conversation format of the safe-rlhf Beaver reward and cost models."""

UNSAFE_LABEL_NAMES = ("unsafe", "toxic", "toxicity", "harmful", "offensive", "hate", "label_1")


def _check_pairs(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        msg = f"Got {len(prompts)} prompts and {len(responses)} responses; counts must match."
        raise ValueError(msg)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        msg = f"Invalid {name}={value!r}: must be an integer >= 1."
        raise ValueError(msg)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# --- sequence classifiers -------------------------------------------------------------------


class _SequenceClassifierScorer:
    """Shared batching and label selection of the sequence-classifier scorers."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        label: str | int | None,
        output: Literal["probability", "logit"],
        use_prompt: bool,
        max_length: int,
        batch_size: int,
        name: str | None,
        device: str | torch.device | None,
    ) -> None:
        _check_positive("max_length", max_length)
        _check_positive("batch_size", batch_size)
        if output not in ("probability", "logit"):
            msg = f"Invalid output={output!r}: choose 'probability' or 'logit'."
            raise ValueError(msg)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.output = output
        self.use_prompt = use_prompt
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_labels = int(model.config.num_labels)
        self.name = name or str(getattr(model, "name_or_path", "") or type(model).__name__)
        self.label_index = self._resolve_label(label)
        self.multi_label = model.config.problem_type == "multi_label_classification"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id

    def _default_label(self) -> int:
        raise NotImplementedError

    def label_ids(self) -> dict[str, int]:
        """Return the model's label names, lower-cased, mapped to their indices."""
        id2label = getattr(self.model.config, "id2label", None) or {}
        return {str(name).lower(): int(index) for index, name in id2label.items()}

    def _resolve_label(self, label: str | int | None) -> int:
        if self.num_labels == 1:
            if label not in (None, 0):
                msg = f"The model has a single output, so label={label!r} must be None or 0."
                raise ValueError(msg)
            return 0
        if label is None:
            return self._default_label()
        if isinstance(label, int):
            if not 0 <= label < self.num_labels:
                msg = f"Invalid label={label}: the model has labels 0..{self.num_labels - 1}."
                raise ValueError(msg)
            return label
        label2id = self.label_ids()
        if label.lower() not in label2id:
            msg = (
                f"Label {label!r} not found; the model's labels are {sorted(label2id)}. "
                f"Pass one of them or an index."
            )
            raise ValueError(msg)
        return label2id[label.lower()]

    def _scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        _check_pairs(prompts, responses)
        device = _model_device(self.model)
        scores: list[float] = []
        for start in range(0, len(responses), self.batch_size):
            batch_responses = list(responses[start : start + self.batch_size])
            if self.use_prompt:
                batch_prompts = list(prompts[start : start + self.batch_size])
                encoded = self.tokenizer(
                    batch_prompts,
                    batch_responses,
                    padding=True,
                    truncation="longest_first",
                    max_length=self.max_length,
                    return_tensors="pt",
                )
            else:
                encoded = self.tokenizer(
                    batch_responses,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
            with torch.inference_mode():
                logits = self.model(**encoded.to(device)).logits.float()
            scores.extend(self._select(logits).tolist())
        return scores

    def _select(self, logits: torch.Tensor) -> torch.Tensor:
        column = logits[:, self.label_index]
        if self.output == "logit":
            return column
        if self.num_labels == 1 or self.multi_label:
            return torch.sigmoid(column)
        return torch.softmax(logits, dim=-1)[:, self.label_index]


class SequenceClassifierCostModel(_SequenceClassifierScorer):
    """A cost model from any `AutoModelForSequenceClassification`.

    The cost is the probability of the unsafe label: softmax over the labels, or a sigmoid for
    a single-output or multi-label model. With `output="logit"` it is that label's raw logit,
    and `threshold` must be on the same scale.

    Args:
        model: The classifier.
        tokenizer: Its tokenizer.
        unsafe_label: The unsafe label's name (from `config.label2id`, case-insensitive) or
            index. By default the first label named like unsafe, toxic, harmful, offensive,
            hate or LABEL_1.
        threshold: The default safety budget.
        output: `"probability"` or `"logit"`.
        use_prompt: Classify the (prompt, response) text pair; with False only the response.
        max_length: Token limit of one input; longer inputs are truncated.
        batch_size: Inputs per forward pass.
        name: Reported name; defaults to the model's `name_or_path`.
        device: Moves the model there when given.

    Example:
        >>> cost_model = SequenceClassifierCostModel.from_pretrained(  # doctest: +SKIP
        ...     "unitary/toxic-bert", unsafe_label="toxic", use_prompt=False)
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        unsafe_label: str | int | None = None,
        threshold: float = 0.5,
        output: Literal["probability", "logit"] = "probability",
        use_prompt: bool = True,
        max_length: int = 512,
        batch_size: int = 16,
        name: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if not isinstance(threshold, int | float) or not math.isfinite(threshold):
            msg = f"Invalid threshold={threshold!r}: must be a finite number."
            raise ValueError(msg)
        super().__init__(
            model,
            tokenizer,
            label=unsafe_label,
            output=output,
            use_prompt=use_prompt,
            max_length=max_length,
            batch_size=batch_size,
            name=name,
            device=device,
        )
        self.threshold = float(threshold)

    def _default_label(self) -> int:
        names = self.label_ids()
        for candidate in UNSAFE_LABEL_NAMES:
            if candidate in names:
                return names[candidate]
        msg = (
            f"No unsafe label found among {sorted(names)}; pass unsafe_label= with the name "
            f"or index of the unsafe class."
        )
        raise ValueError(msg)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, **kwargs: Any
    ) -> SequenceClassifierCostModel:
        """Load the classifier and tokenizer with `from_pretrained`; `kwargs` go to `__init__`."""
        model, tokenizer = _load_classifier(name_or_path, kwargs.pop("device", None))
        return cls(model, tokenizer, name=kwargs.pop("name", str(name_or_path)), **kwargs)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the cost of each (prompt, response) pair."""
        return self._scores(prompts, responses)

    def __repr__(self) -> str:
        return f"SequenceClassifierCostModel(name={self.name!r}, label={self.label_index})"


class SequenceClassifierRewardModel(_SequenceClassifierScorer):
    """A reward model from any `AutoModelForSequenceClassification`.

    A single-output model (the usual reward model) returns its raw logit. A multi-label model
    returns the chosen label's logit by default or, with `output="probability"`, its
    probability.

    Args:
        model: The classifier.
        tokenizer: Its tokenizer.
        label: The label to read; required for a model with several labels.
        output: `"logit"` (default) or `"probability"`.
        use_prompt: Score the (prompt, response) text pair; with False only the response.
        max_length: Token limit of one input.
        batch_size: Inputs per forward pass.
        name: Reported name.
        device: Moves the model there when given.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        label: str | int | None = None,
        output: Literal["probability", "logit"] = "logit",
        use_prompt: bool = True,
        max_length: int = 512,
        batch_size: int = 16,
        name: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            label=label,
            output=output,
            use_prompt=use_prompt,
            max_length=max_length,
            batch_size=batch_size,
            name=name,
            device=device,
        )

    def _default_label(self) -> int:
        msg = (
            f"The model has {self.num_labels} labels {sorted(self.label_ids())}; "
            f"pass label= to choose the one that measures reward."
        )
        raise ValueError(msg)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, **kwargs: Any
    ) -> SequenceClassifierRewardModel:
        """Load the model and tokenizer with `from_pretrained`; `kwargs` go to `__init__`."""
        model, tokenizer = _load_classifier(name_or_path, kwargs.pop("device", None))
        return cls(model, tokenizer, name=kwargs.pop("name", str(name_or_path)), **kwargs)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the reward of each (prompt, response) pair."""
        return self._scores(prompts, responses)

    def __repr__(self) -> str:
        return f"SequenceClassifierRewardModel(name={self.name!r}, label={self.label_index})"


def _load_classifier(name_or_path: str | Path, device: str | torch.device | None) -> tuple:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


# --- generative guards ----------------------------------------------------------------------


def default_guard_messages(prompt: str, response: str) -> list[Message]:
    """Return the conversation a guard classifies: the user's prompt and the response."""
    return [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": response},
    ]


class GuardLMCostModel:
    """A generative guard model scored as P(unsafe) from its next-token logits.

    Each (prompt, response) pair becomes a conversation (`build_messages`), rendered and
    tokenized in one step by the guard's chat template with the generation prompt, followed by
    `assistant_prefix`. The cost is `sum(exp(unsafe logits)) / (sum(exp(unsafe logits)) +
    sum(exp(safe logits)))` over the first token of each verdict word at the next position,
    which is the guard's probability of answering "unsafe" rather than "safe".

    Typical settings:
        Llama Guard 3: the defaults, with `assistant_prefix="\\n\\n"` (the model writes two
            newlines before its verdict).
        ShieldGemma: `unsafe_words=("Yes",)`, `safe_words=("No",)`, and the guideline through
            `chat_template_kwargs`.
        Granite Guardian: `unsafe_words=("Yes",)`, `safe_words=("No",)`, and
            `chat_template_kwargs={"guardian_config": {...}}`.

    Args:
        model: The guard, a causal LM.
        tokenizer: Its tokenizer, with the guard's chat template.
        unsafe_words: Verdict words that mean unsafe.
        safe_words: Verdict words that mean safe.
        threshold: The default safety budget, a probability.
        build_messages: Maps (prompt, response) to the conversation to classify.
        assistant_prefix: Text appended after the generation prompt, before the verdict.
        chat_template_kwargs: Extra variables for the chat template.
        max_length: Token limit of one rendered conversation; longer ones keep their end.
        batch_size: Conversations per forward pass.
        name: Reported name.
        device: Moves the model there when given.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        unsafe_words: Sequence[str] = ("unsafe",),
        safe_words: Sequence[str] = ("safe",),
        threshold: float = 0.5,
        build_messages: MessageBuilder = default_guard_messages,
        assistant_prefix: str = "",
        chat_template_kwargs: Mapping[str, Any] | None = None,
        max_length: int = 4096,
        batch_size: int = 4,
        name: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        _check_positive("max_length", max_length)
        _check_positive("batch_size", batch_size)
        if not 0 < threshold < 1:
            msg = f"Invalid threshold={threshold!r}: must be a probability in (0, 1)."
            raise ValueError(msg)
        if not getattr(tokenizer, "chat_template", None):
            msg = "GuardLMCostModel needs a tokenizer with the guard's chat template."
            raise ValueError(msg)
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.unsafe_ids = self._first_token_ids("unsafe_words", unsafe_words)
        self.safe_ids = self._first_token_ids("safe_words", safe_words)
        overlap = set(self.unsafe_ids) & set(self.safe_ids)
        if overlap:
            msg = (
                f"unsafe_words {list(unsafe_words)} and safe_words {list(safe_words)} start "
                f"with the same token ids {sorted(overlap)}; choose words whose first tokens "
                f"differ (for Llama Guard, 'unsafe' and 'safe' are single tokens)."
            )
            raise ValueError(msg)
        self.threshold = float(threshold)
        self.build_messages = build_messages
        self.assistant_prefix = assistant_prefix
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = name or str(getattr(model, "name_or_path", "") or type(model).__name__)

    def _first_token_ids(self, argument: str, words: Sequence[str]) -> list[int]:
        if not words:
            msg = f"{argument} must contain at least one word."
            raise ValueError(msg)
        ids = []
        for word in words:
            tokens = self.tokenizer.encode(word, add_special_tokens=False)
            if not tokens:
                msg = f"The word {word!r} in {argument} encodes to no tokens."
                raise ValueError(msg)
            ids.append(int(tokens[0]))
        return sorted(set(ids))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> GuardLMCostModel:
        """Load the guard and tokenizer with `from_pretrained`; `kwargs` go to `__init__`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = kwargs.pop("device", None)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype="auto")
        if device is not None:
            model = model.to(device)
        return cls(model, tokenizer, name=kwargs.pop("name", str(name_or_path)), **kwargs)

    def encode(self, prompt: str, response: str) -> list[int]:
        """Return the token ids the guard reads for one pair, ending where the verdict starts."""
        ids = self.tokenizer.apply_chat_template(
            self.build_messages(prompt, response),
            tokenize=True,
            add_generation_prompt=True,
            return_dict=False,
            **self.chat_template_kwargs,
        )
        ids = list(ids)
        if self.assistant_prefix:
            ids += self.tokenizer.encode(self.assistant_prefix, add_special_tokens=False)
        if len(ids) > self.max_length:
            # NOTE: keeping the end keeps the verdict instructions of templates that put
            # them last (Llama Guard 3), but cuts the start of the conversation.
            logger.warning("Guard input of %d tokens cut to its last %d", len(ids), self.max_length)
            ids = ids[-self.max_length :]
        return ids

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the guard's P(unsafe) for each (prompt, response) pair."""
        _check_pairs(prompts, responses)
        scores: list[float] = []
        for start in range(0, len(responses), self.batch_size):
            sequences = [
                self.encode(prompt, response)
                for prompt, response in zip(
                    prompts[start : start + self.batch_size],
                    responses[start : start + self.batch_size],
                    strict=True,
                )
            ]
            scores.extend(self._unsafe_probabilities(sequences))
        return scores

    def _unsafe_probabilities(self, sequences: list[list[int]]) -> list[float]:
        # Left padding puts every sequence's last token at the final position. Position ids
        # count real tokens only, so padding does not shift the rotary positions.
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence)
            attention_mask[row, width - len(sequence) :] = 1
        position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)

        device = _model_device(self.model)
        with torch.inference_mode():
            logits = (
                self.model(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    position_ids=position_ids.to(device),
                    logits_to_keep=1,
                )
                .logits[:, -1]
                .float()
            )
        unsafe = torch.logsumexp(logits[:, self.unsafe_ids], dim=-1)
        safe = torch.logsumexp(logits[:, self.safe_ids], dim=-1)
        return torch.sigmoid(unsafe - safe).tolist()

    def __repr__(self) -> str:
        return f"GuardLMCostModel(name={self.name!r}, threshold={self.threshold})"


# --- Beaver-style score models --------------------------------------------------------------


class ScoreModel(torch.nn.Module):
    """A decoder with a linear score head on the last token, as in safe-rlhf's `LlamaForScore`.

    Args:
        decoder: The base decoder (for example a `LlamaModel`), returning `last_hidden_state`.
        score_head: Linear map from the hidden size to `score_dim` scores.
    """

    def __init__(self, decoder: torch.nn.Module, score_head: torch.nn.Linear) -> None:
        super().__init__()
        self.model = decoder
        self.score_head = score_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Return the scores at each sequence's last real token, shape `(batch, score_dim)`.

        Sequences must be right-padded.
        """
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=-1) - 1
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.score_head(hidden[rows, last]).float()


def load_score_model(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[ScoreModel, Any]:
    """Load a Beaver-style score model from a folder with config, safetensors and tokenizer.

    The weights must use safe-rlhf's names: `model.*` for the decoder and `score_head.weight`
    (plus `score_head.bias` when `config.bias` is true). Sharded checkpoints with a
    `model.safetensors.index.json` are supported. Pickled `.bin` checkpoints are not loaded.

    Raises:
        FileNotFoundError: If the folder has no safetensors weights.
        ValueError: If the weights lack the decoder or the score head.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / shard for shard in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        msg = (
            f"No safetensors weights found in {folder}. Convert a pickled checkpoint with "
            f"`model.save_pretrained(folder, safe_serialization=True)` first."
        )
        raise FileNotFoundError(msg)
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))

    head_weight = state.pop("score_head.weight", None)
    head_bias = state.pop("score_head.bias", None)
    if head_weight is None:
        msg = f"The weights in {folder} have no score_head.weight; is this a score model?"
        raise ValueError(msg)
    decoder_state = {
        k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")
    }
    if not decoder_state:
        msg = f"The weights in {folder} have no decoder weights named model.*."
        raise ValueError(msg)
    ignored = sorted(k for k in state if not k.startswith("model."))
    if ignored:
        # Score normalisation statistics, for example, are not applied: scores are the raw
        # outputs of the score head.
        logger.info("Ignoring %d non-decoder tensors of %s: %s", len(ignored), folder, ignored[:5])

    config = AutoConfig.from_pretrained(folder)
    decoder = AutoModel.from_config(config)
    missing, unexpected = decoder.load_state_dict(decoder_state, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k]
    if missing or unexpected:
        msg = (
            f"The decoder weights in {folder} do not match its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
        raise ValueError(msg)
    score_head = torch.nn.Linear(
        head_weight.shape[1], head_weight.shape[0], bias=head_bias is not None
    )
    with torch.no_grad():
        score_head.weight.copy_(head_weight)
        if head_bias is not None:
            score_head.bias.copy_(head_bias)
    model = ScoreModel(decoder, score_head).to(device=device, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


class _ScoreModelScorer:
    def __init__(
        self,
        model: ScoreModel,
        tokenizer: Any,
        *,
        template: str,
        score_index: int,
        max_length: int,
        batch_size: int,
        name: str | None,
    ) -> None:
        _check_positive("max_length", max_length)
        _check_positive("batch_size", batch_size)
        if "{prompt}" not in template or "{response}" not in template:
            msg = f"Invalid template={template!r}: it must contain {{prompt}} and {{response}}."
            raise ValueError(msg)
        score_dim = model.score_head.out_features
        if not 0 <= score_index < score_dim:
            msg = f"Invalid score_index={score_index}: the score head has {score_dim} outputs."
            raise ValueError(msg)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.score_index = score_index
        self.max_length = max_length
        self.batch_size = batch_size
        self.name = name or "score-model"

    def _scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        _check_pairs(prompts, responses)
        device = _model_device(self.model)
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else self.tokenizer.eos_token_id or 0
        eos = self.tokenizer.eos_token_id
        scores: list[float] = []
        for start in range(0, len(responses), self.batch_size):
            sequences = []
            for prompt, response in zip(
                prompts[start : start + self.batch_size],
                responses[start : start + self.batch_size],
                strict=True,
            ):
                text = self.template.format(prompt=prompt, response=response)
                ids = self.tokenizer.encode(text, add_special_tokens=True)
                # An EOS token closes the conversation, and the head reads its hidden state.
                # NOTE: not checked against safe-rlhf's own scoring code. Compare a few scores
                # with it before relying on a Beaver model's threshold.
                ids = ids[: self.max_length - 1] + ([eos] if eos is not None else [])
                sequences.append(ids)
            width = max(len(s) for s in sequences)
            input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
            for row, sequence in enumerate(sequences):
                input_ids[row, : len(sequence)] = torch.tensor(sequence)
                attention_mask[row, : len(sequence)] = 1
            with torch.inference_mode():
                output = self.model(input_ids.to(device), attention_mask.to(device))
            scores.extend(output[:, self.score_index].tolist())
        return scores


class ScoreModelCostModel(_ScoreModelScorer):
    """A cost model from a Beaver-style score model (for example Beaver-7B cost).

    The cost is the score head's output at the last token; safe-rlhf's cost models treat a
    positive cost as unsafe, hence the default threshold 0.

    Args:
        model: From `load_score_model`.
        tokenizer: Its tokenizer.
        threshold: The default safety budget on the score scale.
        template: Conversation format with `{prompt}` and `{response}`.
        score_index: Which score-head output to read.
        max_length: Token limit; longer conversations are truncated at the end.
        batch_size: Conversations per forward pass.
        name: Reported name.
    """

    def __init__(
        self,
        model: ScoreModel,
        tokenizer: Any,
        *,
        threshold: float = 0.0,
        template: str = BEAVER_TEMPLATE,
        score_index: int = 0,
        max_length: int = 1024,
        batch_size: int = 8,
        name: str | None = None,
    ) -> None:
        if not isinstance(threshold, int | float) or not math.isfinite(threshold):
            msg = f"Invalid threshold={threshold!r}: must be a finite number."
            raise ValueError(msg)
        super().__init__(
            model,
            tokenizer,
            template=template,
            score_index=score_index,
            max_length=max_length,
            batch_size=batch_size,
            name=name,
        )
        self.threshold = float(threshold)

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> ScoreModelCostModel:
        """Load with `load_score_model`; `device` and `dtype` go there, the rest to `__init__`."""
        model, tokenizer = load_score_model(
            folder, device=kwargs.pop("device", "cpu"), dtype=kwargs.pop("dtype", torch.float32)
        )
        return cls(model, tokenizer, name=kwargs.pop("name", str(folder)), **kwargs)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the cost of each (prompt, response) pair."""
        return self._scores(prompts, responses)

    def __repr__(self) -> str:
        return f"ScoreModelCostModel(name={self.name!r}, threshold={self.threshold})"


class ScoreModelRewardModel(_ScoreModelScorer):
    """A reward model from a Beaver-style score model (for example Beaver-7B reward).

    Arguments as in `ScoreModelCostModel`, without the threshold.
    """

    def __init__(
        self,
        model: ScoreModel,
        tokenizer: Any,
        *,
        template: str = BEAVER_TEMPLATE,
        score_index: int = 0,
        max_length: int = 1024,
        batch_size: int = 8,
        name: str | None = None,
    ) -> None:
        super().__init__(
            model,
            tokenizer,
            template=template,
            score_index=score_index,
            max_length=max_length,
            batch_size=batch_size,
            name=name,
        )

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> ScoreModelRewardModel:
        """Load with `load_score_model`; `device` and `dtype` go there, the rest to `__init__`."""
        model, tokenizer = load_score_model(
            folder, device=kwargs.pop("device", "cpu"), dtype=kwargs.pop("dtype", torch.float32)
        )
        return cls(model, tokenizer, name=kwargs.pop("name", str(folder)), **kwargs)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """Return the reward of each (prompt, response) pair."""
        return self._scores(prompts, responses)

    def __repr__(self) -> str:
        return f"ScoreModelRewardModel(name={self.name!r})"
