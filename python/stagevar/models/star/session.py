"""STAR generation, scale by scale: :class:`STARSession` implements the ``GenerationSession`` protocol
(``stagevar.models.session``) for our :class:`~.transformer.STAR` and for objects of the official ``VAR`` class
(``models/var_drop.py``), which it recognises by the official attribute names only.

Semantics are those of upstream ``sample.py`` (``VAR.autoregressive_infer_cfg`` without the sampler head):

* rows ``0..B-1`` carry the prompts, rows ``B..2B-1`` the empty prompt; ``sos = encoder_proj(pool)``;
* at scale ``si`` the logits are mixed ``(1 + t) * cond - t * uncond`` with ``t = cfg * si / (S - 1)``;
* top-k/top-p sampling, one ``torch.multinomial`` draw sequence per scale over the ``(B*L, V)`` probabilities;
* codebook lookup, bicubic upsampling to the final grid, the scale's phi conv, ``f_hat`` accumulation; the next
  scale's input is ``word_embed(area(f_hat)) + lvl_embed``, repeated for the CFG rows;
* the cross-attention ``[0]`` quirk: every row receives the cross-attention output of the current row 0, whose
  query is row 0's own residual stream. Batch items therefore interact: item 0 is independent of the others, item
  ``i > 0`` depends on item 0 (its text and its generated content) and on nothing else.

All per-generation state (KV caches, text rows, ``f_hat``, random generators) lives on the session; the modules
are only read. Differences from upstream under autocast (not in fp32): ``f_hat`` is accumulated in fp32 (upstream
keeps it in the autocast dtype) and the cross-attention is computed for row 0 only (upstream computes every row and
keeps row 0).
"""

from __future__ import annotations

import torch
from torch import nn

from ...engine import StaticKV
from ..common import autocast, make_generators
from ..session import UNIT_KINDS, rows_for
from .blocks import BlockConsts, block_forward_static, cross_text_kv, num_heads_of, text_bias
from .config import model_geometry
from .quant import add_scale_codes, next_scale_input
from .rope import rope_tables
from .sampling import sample_tokens


def _unpack_text(text):
    if isinstance(text, dict):
        return text["hidden"], text["mask"], text["pool"]
    if hasattr(text, "hidden") and hasattr(text, "pool"):
        return text.hidden, text.mask, text.pool
    hidden, mask, pool = text
    return hidden, mask, pool


class STARSession:
    """One generation of ``batch`` images (see module docstring and ``GenerationSession``).

    Extra attributes: ``rows`` (rows currently computed), ``cfg``, ``top_k``, ``top_p``, ``amp_dtype``; with
    ``record=True``, ``records`` holds one dict per finished scale: ``si``, ``head_logits`` (float32
    ``(rows, pn^2, V)`` raw per-row logits), ``logits`` (after the guidance mix, before top-k/top-p) and ``tokens``
    (int64 ``(B, pn^2)``); ``record_logits``/``record_tokens`` list the raw logits and the tokens.
    """

    def __init__(
        self,
        model: nn.Module,
        vae: nn.Module,
        text,
        *,
        batch: int,
        seeds=None,
        cfg: float = 4.5,
        top_k: int = 600,
        top_p: float = 0.8,
        record: bool = False,
        amp_dtype="auto",
    ):
        geo = model_geometry(model)
        self.model, self.vae, self.quantize = model, vae, vae.quantize
        self.device = model.word_embed.weight.device
        B = int(batch)
        hidden, mask, pool = _unpack_text(text)
        if hidden.dim() != 3 or hidden.shape[0] != 2 * B or mask.shape != hidden.shape[:2] or pool.shape[0] != 2 * B:
            raise ValueError(
                f"STARSession: text must be hidden (2B, T, D), mask (2B, T), pool (2B, D) with 2B = {2 * B} rows "
                f"(prompts first, empty prompt last); got {tuple(hidden.shape)}, {tuple(mask.shape)}, "
                f"{tuple(pool.shape)}"
            )
        wdt = model.encoder_proj.weight.dtype
        self.hidden = hidden.to(self.device, wdt)  # (R, T, D)
        self.bias = text_bias(mask.to(self.device))  # (R, 1, 1, T) fp32, 0 or -inf
        self.pool = pool.to(self.device, wdt)  # (R, D)

        self.patch_nums = geo["patch_nums"]
        self.scales = [(pn, pn) for pn in self.patch_nums]
        self.batch, self.guidance, self.width = B, "cfg", geo["width"]
        self.cfg, self.top_k, self.top_p = float(cfg), int(top_k), float(top_p)
        # (L_total, head_dim/2) fp32 each, every scale's tokens in raster order
        self.cos, self.sin = rope_tables(geo["head_dim"], self.patch_nums, geo["theta"], geo["norm"], self.device)
        self._begin = [0]
        for pn in self.patch_nums:
            self._begin.append(self._begin[-1] + pn * pn)
        self._gens = make_generators(seeds, B, self.device)
        self._block_index = {id(b): i for i, b in enumerate(model.blocks)}
        self.consts = [BlockConsts.of(b) for b in model.blocks]
        heads = num_heads_of(model.blocks[0].attn)
        self.kv = StaticKV(len(model.blocks), self.rows, heads, self._begin[-1], geo["head_dim"], self.device)
        HW = self.patch_nums[-1]
        # the accumulated codes (B, Cvae, HW, HW), fp32 whatever the autocast dtype
        self.f_hat = torch.zeros(B, self.quantize.embedding.weight.shape[1], HW, HW, device=self.device)
        self.record = record
        self.records: list[dict] = []
        if amp_dtype == "auto":  # upstream sample.py runs under fp16 autocast on CUDA
            amp_dtype = torch.float16 if self.device.type == "cuda" else None
        self.amp_dtype = amp_dtype
        self._text0 = self._text_row0()
        self._text0_by_guidance: dict[str, list[tuple]] | None = None  # set by graph_inputs

    @property
    def record_logits(self) -> list[torch.Tensor]:
        return [r["head_logits"] for r in self.records]

    @property
    def record_tokens(self) -> list[torch.Tensor]:
        return [r["tokens"] for r in self.records]

    def _amp(self):
        return autocast(self.device, self.amp_dtype)

    # ------------------------------------------------------------------ protocol
    @property
    def rows(self) -> int:
        return 2 * self.batch if self.guidance == "cfg" else self.batch

    def units(self, kind: str) -> list[list[nn.Module]]:
        """``"block"``: one block per unit. STAR has no chunks: ``"chunk"`` raises ValueError."""
        if kind == "chunk":
            raise ValueError("STAR has no block chunks; use unit='block'")
        if kind not in UNIT_KINDS:
            raise ValueError(f"units: expected one of {UNIT_KINDS}, got {kind!r}")
        return [[b] for b in self.model.blocks]

    @torch.no_grad()
    def scale_input(self, si: int) -> torch.Tensor:
        """``(rows, pn^2, C)``: sos + pos_start + lvl_embed[0] at si=0, else word_embed(area(f_hat)) + lvl_embed[si]."""
        m = self.model
        lvl = m.lvl_embed.weight[si]
        with self._amp():
            if si == 0:
                sos_R1C = m.encoder_proj(self.pool)[:, None]
                return sos_R1C + m.pos_start + lvl
            codes_BLc = next_scale_input(self.f_hat, self.patch_nums[si])
            x_BLC = m.word_embed(codes_BLc.to(m.word_embed.weight.dtype)) + lvl
        return x_BLC.repeat(2, 1, 1) if self.guidance == "cfg" else x_BLC  # (R, pn^2, C)

    @torch.no_grad()
    def _text_row0(self, row: int = 0) -> list[tuple]:
        """Every block's text ``(k, v, bias)`` of the current row ``row`` (0: the cross-attention's ``[0]``), once
        per generation and guidance."""
        rows = slice(row, row + 1)
        with self._amp():
            return [(*cross_text_kv(b.cross_attn, self.hidden[rows]), self.bias[rows]) for b in self.model.blocks]

    def _reserve(self, index: int):
        return lambda length, dtype: self.kv.reserve(index, length, dtype)

    @torch.no_grad()
    def run_block(self, block: nn.Module, x: torch.Tensor, si: int, positions: torch.Tensor | None = None):
        """One block on ``x`` ``(rows, L, C)`` at scale ``si``; K/V appended to this block's cache.

        ``positions``: int64 ``(rows, L)`` (or ``(L,)``) flat indices into the scale's ``pn x pn`` grid selecting
        each token's RoPE angles; None means the whole scale in raster order.
        """
        R, L, _ = x.shape
        if R != self.rows:
            raise ValueError(f"run_block: x has {R} rows, guidance {self.guidance!r} has {self.rows}")
        b, e = self._begin[si], self._begin[si + 1]
        cos, sin = self.cos[b:e], self.sin[b:e]
        if positions is None:
            if L != e - b:
                raise ValueError(f"run_block: scale {si} has {e - b} tokens, x has {L}; pass positions")
        else:
            positions = positions.to(self.device)
            cos, sin = cos[positions], sin[positions]
        index = self._block_index[id(block)]
        with self._amp():
            return block_forward_static(
                block, x, cos, sin, kv=self._reserve(index), text_row0=self._text0[index], consts=self.consts[index]
            )

    def set_guidance(self, guidance: str) -> None:
        """Keep only the prompt rows (``"cond"``) or the empty-prompt rows (``"null"``) from now on."""
        sl = rows_for(self.guidance, guidance, self.batch)
        if guidance == self.guidance:
            return
        self.kv.keep_rows(sl)
        self.hidden, self.bias, self.pool = self.hidden[sl], self.bias[sl], self.pool[sl]
        if self._text0_by_guidance is not None:  # built at set-up (graphed steps read them at fixed addresses)
            self._text0 = self._text0_by_guidance[guidance]
        else:
            self._text0 = self._text_row0()  # row 0 is now another row
        self.guidance = guidance

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits ``(rows, L, V)`` = ``head_logits(logit_norm(x.float()))``."""
        m = self.model
        h = m.logit_norm(x.float())
        return m.head_logits(h.to(m.head_logits.weight.dtype)).float()  # a no-op cast unless weights are bf16/fp16

    @torch.no_grad()
    def finish_scale(self, si: int, x: torch.Tensor) -> None:
        """Head, guidance mix, sampling and ``f_hat`` update for scale ``si`` (``x``: ``(rows, pn^2, C)``)."""
        pn = self.patch_nums[si]
        if x.shape[:2] != (self.rows, pn * pn):
            raise ValueError(f"finish_scale: expected x of shape ({self.rows}, {pn * pn}, C), got {tuple(x.shape)}")
        with self._amp():
            logits_RLV = self.logits(x)
        rec = {"si": si, "head_logits": logits_RLV.clone()} if self.record else None
        B = self.batch
        logits_BLV = logits_RLV
        if self.guidance == "cfg":
            t = self.cfg * si / (len(self.patch_nums) - 1)
            logits_BLV = (1 + t) * logits_RLV[:B] - t * logits_RLV[B:]
        if rec is not None:
            rec["logits"] = logits_BLV.clone()
        idx_BL = sample_tokens(logits_BLV, self.top_k, self.top_p, self._gens)
        if rec is not None:
            rec["tokens"] = idx_BL
            self.records.append(rec)
        h_BCpp = self.quantize.embedding(idx_BL).transpose(1, 2).reshape(B, -1, pn, pn)
        with self._amp():
            add_scale_codes(self.quantize, self.f_hat, h_BCpp, si, len(self.patch_nums))

    @torch.no_grad()
    def decode(self) -> torch.Tensor:
        """float32 RGB ``(B, 3, H, W)`` in [0, 1]: ``vae.fhat_to_img(f_hat)`` without autocast, mapped from [-1, 1]."""
        self.release_state()
        dt = self.vae.post_quant_conv.weight.dtype
        with torch.autocast(self.device.type, enabled=False):
            img = self.vae.fhat_to_img(self.f_hat.to(dt)).float()
        return img.add_(1).mul_(0.5)

    # ------------------------------------------------------------------ CUDA graphs (stagevar.engine.graphs)
    def plan_scales(self, n: int) -> None:
        """Size the KV cache for the first ``n`` scales only (the computed ones: skipped final steps hold no keys).
        Call before the first step."""
        if not 1 <= int(n) <= len(self.scales):
            raise ValueError(f"n: expected 1..{len(self.scales)} computed scales, got {n}")
        self.kv.set_capacity(self._begin[int(n)])

    def graph_inputs(self) -> list[torch.Tensor]:
        """The set-up tensors the computed steps read that depend on the prompts, in a fixed order: the text bias
        ``(2B, ...)`` and every block's row-0 text K/V of the prompt rows (``cfg`` and ``cond``) and of the
        empty-prompt rows (``null``). Call before any :meth:`set_guidance`: the null rows' K/V are computed here
        once, so that a guidance switch only picks tensors of this list (rather than computing new ones)."""
        if self.guidance != "cfg":
            raise RuntimeError("graph_inputs: call before set_guidance (the workspace holds the set-up rows)")
        if self._text0_by_guidance is None:
            self._text0_by_guidance = {"cond": self._text0, "null": self._text_row0(self.batch)}
        tensors = [self.bias]
        for guidance in ("cond", "null"):
            for k, v, _ in self._text0_by_guidance[guidance]:
                tensors += [k, v]
        return tensors

    def graph_signature(self) -> tuple:
        """What the computed steps bake in besides shapes: the amp dtype."""
        return (self.amp_dtype,)

    def release_state(self) -> None:
        """Free the KV cache and the text K/V (decoding needs only ``f_hat``)."""
        self.kv.release()
        self._text0 = []

    def codes(self) -> torch.Tensor:
        """The accumulated codes ``f_hat``: float32 ``(B, Cvae, H, W)`` (the session's own tensor, not a copy)."""
        return self.f_hat


def new_session(model: nn.Module, vae: nn.Module | None, text, **kwargs) -> STARSession:
    """A :class:`STARSession` for ``model`` (ours or an official ``VAR``) and its VQ-VAE.

    Args:
        vae: the VQ-VAE; None uses ``model.vae_proxy[0]`` (set by the official builder, or ``STAR.attach_vae``).
        text: ``(hidden (2B, 77, 1024) float, mask (2B, 77) 0/1, pool (2B, 1024))``, prompt rows first.
        batch: the number of images ``B`` (keyword, required).
        seeds: int (one generator, upstream's draw order), list of B ints (one generator per image) or None
            (the global generator).
        cfg, top_k, top_p: guidance scale (``t = cfg * si / (S - 1)``) and sampling rule (sample.py: 4.5, 600, 0.8).
        record: keep per-scale logits and tokens in ``session.records``.
        amp_dtype: autocast dtype the session applies around the transformer (``"auto"``: fp16 on CUDA as
            upstream's sample.py, none on CPU; ``None``: leave it to the caller's context). Decoding is fp32.
    """
    if vae is None:
        proxy = getattr(model, "vae_proxy", ())
        if not proxy:
            raise ValueError("new_session: pass the VQ-VAE (the model has no vae_proxy)")
        vae = proxy[0]
    return STARSession(model, vae, text, **kwargs)
