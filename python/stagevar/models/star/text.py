"""STAR's text encoder: the 1024-wide CLIP text model (SD-2.1 / OpenCLIP-H) through ``transformers``.

Layout as upstream (``models/text_encoder.py``): ``<path>/tokenizer`` (CLIPTokenizer) and ``<path>/text_encoder``
(CLIPTextModel). Loading is local only (no download). ``transformers`` is an optional dependency
(``pip install stagevar-kernels[hf]``), imported when an encoder is built.
"""

from __future__ import annotations

import os

import torch


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "STAR's CLIP text encoder needs the optional dependency 'transformers': "
            "pip install 'stagevar-kernels[hf]' (or pip install transformers)"
        ) from e
    return transformers


class CLIPTextEncoder:
    """Encodes prompts to ``(hidden (N, 77, D) float32, mask (N, 77) int64 0/1, pool (N, D) float32)``.

    ``pool`` is ``pooler_output`` (the EOS token's final state, not projected), as upstream.
    """

    def __init__(self, path: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.float32):
        path = os.fspath(path)
        tok_dir, enc_dir = os.path.join(path, "tokenizer"), os.path.join(path, "text_encoder")
        for d in (path, tok_dir, enc_dir):
            if not os.path.isdir(d):
                raise FileNotFoundError(f"CLIP text encoder: directory not found: {d}")
        tf = _transformers()
        try:
            self.tokenizer = tf.CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
            self.model = tf.CLIPTextModel.from_pretrained(enc_dir, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:  # transformers' errors for missing or malformed files
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise ValueError(f"{path}: not a loadable CLIP text encoder folder ({first})") from None
        self.model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.width = self.model.config.hidden_size

    @torch.no_grad()
    def encode(self, prompts: list[str]):
        """Tokenise (pad to ``model_max_length``, truncate) and encode ``prompts``."""
        tok = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).to(self.device)
        out = self.model(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
        return out.last_hidden_state.float(), tok.attention_mask, out.pooler_output.float()

    def encode_for_cfg(self, prompts: list[str]):
        """The session's text rows: ``prompts`` then as many empty prompts (``2B`` rows)."""
        return self.encode(list(prompts) + [""] * len(prompts))


def load_clip_text_encoder(path, device="cpu", dtype: torch.dtype = torch.float32) -> CLIPTextEncoder:
    """Build a :class:`CLIPTextEncoder` from the local directory ``path``."""
    return CLIPTextEncoder(path, device=device, dtype=dtype)
