"""Text conditioning: packed T5 features, CFG rows, flan-T5-XL from a local directory (optional ``transformers``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class TextFeatures:
    """Packed text features of ``len(lens)`` prompts: ``feats`` ``(sum(lens), Ct5)`` (fp32), ``lens`` tokens per prompt.

    Upstream passes ``(kv_compact, lens, cu_seqlens_k, max_seqlen_k)``; :meth:`from_any` accepts that tuple too.
    """

    feats: torch.Tensor
    lens: list[int]

    @property
    def batch(self) -> int:
        return len(self.lens)

    @property
    def cu_seqlens(self) -> torch.Tensor:
        return F.pad(torch.tensor(self.lens, dtype=torch.int32).cumsum(0, dtype=torch.int32), (1, 0))

    def as_upstream(self) -> tuple:
        """The official ``label_B_or_BLT`` tuple ``(kv_compact, lens, cu_seqlens_k, max_seqlen_k)``."""
        return self.feats, list(self.lens), self.cu_seqlens.to(self.feats.device), max(self.lens)

    @staticmethod
    def from_any(text) -> TextFeatures:
        if isinstance(text, TextFeatures):
            return text
        if isinstance(text, (tuple, list)) and len(text) == 4:
            feats, lens = text[0], text[1]
            lens = [int(v) for v in (lens.tolist() if torch.is_tensor(lens) else lens)]
            return TextFeatures(feats, lens)
        raise TypeError("text: expected TextFeatures or upstream (kv_compact, lens, cu_seqlens_k, max_seqlen_k)")

    @staticmethod
    def from_padded(features: torch.Tensor, mask: torch.Tensor) -> TextFeatures:
        """From encoder output ``(B, L, Ct5)`` and attention mask ``(B, L)`` (valid tokens first, as T5 pads)."""
        lens = [int(v) for v in mask.sum(-1).tolist()]
        return TextFeatures(torch.cat([f[:n] for f, n in zip(features.unbind(0), lens)], 0).float(), lens)

    @staticmethod
    def cat(parts: list[TextFeatures]) -> TextFeatures:
        return TextFeatures(torch.cat([p.feats for p in parts], 0), [n for p in parts for n in p.lens])

    def select(self, indices: list[int]) -> TextFeatures:
        starts = [0]
        for n in self.lens:
            starts.append(starts[-1] + n)
        return TextFeatures(
            torch.cat([self.feats[starts[i] : starts[i + 1]] for i in indices], 0), [self.lens[i] for i in indices]
        )


def null_text(cfg_uncond: torch.Tensor, lens: list[int]) -> TextFeatures:
    """Upstream's null prompt: each row's tokens replaced by ``cfg_uncond[:len]`` (same lengths as the prompt)."""
    return TextFeatures(torch.cat([cfg_uncond[:n] for n in lens], 0), list(lens))


def cfg_rows(model, text: TextFeatures, negative: TextFeatures | None, use_cfg: bool) -> TextFeatures:
    """Rows of one generation: the B prompt rows, then (with CFG) B negative-prompt or null rows."""
    if not use_cfg:
        return text
    if negative is None:
        neg = null_text(model.cfg_uncond.to(device=text.feats.device, dtype=text.feats.dtype), text.lens)
    else:
        if negative.batch == 1 and text.batch > 1:
            negative = TextFeatures.cat([negative] * text.batch)
        if negative.batch != text.batch:
            raise ValueError(f"negative_text: expected {text.batch} prompts (or 1), got {negative.batch}")
        neg = negative
    return TextFeatures.cat([text, TextFeatures(neg.feats.to(text.feats.device, text.feats.dtype), neg.lens)])


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError as e:  # optional dependency
        raise ImportError(
            "loading flan-T5 needs the optional dependency 'transformers' (pip install 'stagevar-kernels[hf]')"
        ) from e
    return transformers


def load_t5(path: str | os.PathLike, device="cpu", dtype=torch.float16):
    """Tokenizer and ``T5EncoderModel`` from a local directory (never the network). Returns ``(tokenizer, encoder)``.

    A folder that is not a saved flan-T5 (missing or unreadable files) raises ``ValueError`` naming it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    if not os.path.isdir(path):
        raise ValueError(f"{path}: the T5 text encoder is a folder (google/flan-t5-xl saved by transformers)")
    tf = _require_transformers()
    try:
        tok = tf.AutoTokenizer.from_pretrained(path, legacy=True, local_files_only=True)
        enc = tf.T5EncoderModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:  # transformers' errors for missing or malformed files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(f"{path}: not a loadable flan-T5 folder ({first})") from None
    tok.model_max_length = 512
    enc.to(device).eval().requires_grad_(False)
    return tok, enc


@torch.no_grad()
def encode_prompts(tokenizer, encoder, prompts: list[str] | str, max_length: int = 512) -> TextFeatures:
    """T5 features of ``prompts`` as upstream ``encode_prompt`` does (pad to max_length, keep valid tokens, fp32)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    device = next(encoder.parameters()).device
    tokens = tokenizer(text=prompts, max_length=max_length, padding="max_length", truncation=True, return_tensors="pt")
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    feats = encoder(input_ids=ids, attention_mask=mask)["last_hidden_state"].float()
    return TextFeatures.from_padded(feats, mask)
