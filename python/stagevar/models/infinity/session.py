"""``InfinitySession``: one Infinity generation stepped scale by scale (the ``GenerationSession`` protocol).

Works on our :class:`~stagevar.models.infinity.transformer.Infinity` and on objects of the official ``Infinity`` class
(recognised by their attribute names: ``text_norm``, ``text_proj_for_sos``, ``text_proj_for_ca``, ``pos_start``,
``shared_ada_lin``, ``lvl_embed``, ``word_embed``, ``block_chunks[i].module[j]``, ``head_nm``, ``head``,
``cfg_uncond``), with our VAE or the official one (``vae.embed_dim``, ``vae.decode``). All per-generation state (the
self-attention KV cache of every block, the text K/V, the accumulated codes, the generators) lives here.

The plain loop (equal to upstream ``autoregressive_infer_cfg`` with ``cfg_insertion_layer=0``)::

    s = new_session(model, vae, schedule, text, cfg_list=3.0, tau_list=0.5, seeds=0)
    for si in range(len(s.scales)):
        x = s.scale_input(si)
        for unit in s.units("chunk"):
            for block in unit:
                x = s.run_block(block, x, si)
        s.finish_scale(si, x)
    images = s.decode()            # float RGB (B, 3, H, W) in [0, 1]
"""

from __future__ import annotations

import torch

from ...engine import StaticKV
from ..common import autocast, make_generators
from ..session import GUIDANCES, UNIT_KINDS, rows_for
from . import bitwise, rope
from .blocks import (
    BlockConsts,
    TextContext,
    attention_pool,
    block_forward,
    block_forward_upstream,
    cross_attention,
    embed_codes,
    head_logits,
    head_modulation,
    pad_rows,
    shared_gss,
    text_kv,
    text_to_ca,
)
from .scales import normalize_schedule, rope_grid, scale_starts
from .text import TextFeatures, cfg_rows

ENGINES = ("static", "upstream")  # the engine's data flow, or upstream's (growing cat KV, unfused math): a baseline


def _as_list(v, n: int, name: str) -> list[float]:
    if isinstance(v, (int, float)):
        return [float(v)] * n
    v = [float(x) for x in v]
    if len(v) < n:
        raise ValueError(f"{name}: expected at least {n} values (one per scale), got {len(v)}")
    return v


def _cfg_insertion(layers, depth: int) -> tuple[bool, set[int]]:
    """Upstream's ``cfg_insertion_layer``: 0 = CFG on the logits; ``-k`` = CFG on the output of block ``depth - k``
    (its rows mixed and duplicated). Returns (on logits, the absolute block indices)."""
    items = [layers] if isinstance(layers, int) else list(layers)
    on_logits, absolute = False, set()
    for item in items:
        if item == 0:
            on_logits = True
        elif item < 0 and depth + item > 0:
            absolute.add(depth + item)
        else:
            raise ValueError(f"cfg_insertion_layer: {item} is not supported (0, or -k with 0 < k < depth={depth})")
    return on_logits, absolute


def model_blocks(model) -> list[list]:
    """The block chunks of ``model`` as lists of blocks (official: ``block_chunks[i].module``; ``blocks`` fallback)."""
    if hasattr(model, "block_chunks"):
        return [list(chunk.module) for chunk in model.block_chunks]
    return [list(model.blocks)]


class InfinitySession:
    """One generation of ``batch`` images. Build it with :func:`new_session`.

    The surface a method that runs blocks its own way uses (the FastVAR peer): :meth:`autocast`,
    :meth:`block_consts` (per-block constants of the rows), :meth:`block_kv` (the block's place in the static KV
    cache), :meth:`rope_angles` (RoPE of a call), :meth:`cross_attend` (a block's cross-attention over the text rows)
    and ``cfg_layers``; with :func:`~stagevar.models.infinity.blocks.attend_self` and the ``stagevar_kernels.block``
    ops they compute exactly what :meth:`run_block` computes.

    Attributes: ``scales`` ``[(h, w)]``; ``batch``; ``guidance`` (``"cfg"``: 2B rows, prompt rows first; ``"cond"`` or
    ``"null"``: B rows); ``width`` (C); ``rows`` (current row count); ``record`` (per-scale ``records`` list of dicts
    with ``logits`` (B, L, V) after the CFG mix and tau, before top-k/top-p, ``head_logits`` (R, L, V) raw head
    outputs of the rows run, ``bits`` int64 (B, L, d), ``input`` the scale's code input (B, L, d) or None at si=0).
    """

    def __init__(
        self,
        model,
        vae,
        scale_schedule,
        text,
        *,
        batch=None,
        negative_text=None,
        seeds=None,
        cfg_list=3.0,
        tau_list=1.0,
        top_k=900,
        top_p=0.97,
        record=False,
        amp_dtype="auto",
        ca_bf16=False,
        cfg_insertion_layer=0,
        engine="static",
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self.model, self.vae = model, vae
        self.scales = normalize_schedule(scale_schedule)
        n = len(self.scales)
        if n > model.lvl_embed.weight.shape[0]:
            raise ValueError(f"scale_schedule: {n} scales but lvl_embed has {model.lvl_embed.weight.shape[0]} rows")
        self.grid = rope_grid(self.scales)
        self.starts = scale_starts(self.scales)
        self.patchify = bool(getattr(model, "apply_spatial_patchify", False))
        self.vae_scales = [(2 * h, 2 * w) if self.patchify else (h, w) for h, w in self.scales]
        self.codebook_dim = int(vae.embed_dim)
        text = TextFeatures.from_any(text)
        self.batch = text.batch if batch is None else int(batch)
        if text.batch != self.batch:
            raise ValueError(f"text: {text.batch} prompts for batch {self.batch}")
        negative = None if negative_text is None else TextFeatures.from_any(negative_text)
        self.cfg_list = _as_list(cfg_list, n, "cfg_list")
        self.tau_list = _as_list(tau_list, n, "tau_list")
        self.top_k, self.top_p = int(top_k), float(top_p)
        self.record, self.records = record, []
        self.ca_bf16 = ca_bf16
        self.device = model.pos_start.device
        self.width = int(model.pos_start.shape[-1])
        if amp_dtype == "auto":
            amp_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        self.amp_dtype = amp_dtype
        self.generators = make_generators(seeds, self.batch, self.device)
        self.use_cfg = any(c != 1 for c in self.cfg_list)
        self.guidance = "cfg" if self.use_cfg else "cond"
        self._chunks = model_blocks(model)
        self._head_dim = self.width // self._chunks[0][0].sa.num_heads
        # Without CFG there is nothing to mix, so the insertion layer is not even checked.
        self.cfg_on_logits, self.cfg_layers = (
            _cfg_insertion(cfg_insertion_layer, sum(map(len, self._chunks))) if self.use_cfg else (False, set())
        )
        self._layer = 0  # index of the next block within the current scale (for hidden-state CFG)
        self.summed: torch.Tensor | None = None
        blocks = [b for chunk in self._chunks for b in chunk]
        self._block_index = {id(b): i for i, b in enumerate(blocks)}
        with torch.no_grad(), self._amp():
            self._prepare_text(text, negative)
            # per-block constants and every block's text K/V, once per generation
            self.consts = [BlockConsts.of(b, self.gss) for b in blocks]
            for b in blocks:
                self.text.kv[id(b)] = text_kv(b.ca, self.text.feats)
        # computed on the CPU as upstream (pow/cos/sin may differ by an ulp on a GPU), then moved, once per session
        self._rope_tables = [rope.scale_table(h, w, *self.grid, self._head_dim).to(self.device) for h, w in self.scales]
        self._rope_gathered = (None, None, None)  # (si, positions, table): one gather per unit in reduced steps
        self._head_mod: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.kv = StaticKV(
            len(blocks),
            self.rows,
            blocks[0].sa.num_heads,
            sum(h * w for h, w in self.scales),
            self._head_dim,
            self.device,
        )
        self._cat_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # engine="upstream" only

    # -- setup -------------------------------------------------------------------------------------------------
    def autocast(self):
        """The autocast context the session runs the transformer in (``amp_dtype``; none when it is None)."""
        return self._amp()

    def _amp(self):
        return autocast(self.device, self.amp_dtype)

    def _prepare_text(self, text: TextFeatures, negative: TextFeatures | None):
        m = self.model
        rows = cfg_rows(m, TextFeatures(text.feats.to(self.device).float(), text.lens), negative, self.use_cfg)
        kv = m.text_norm(rows.feats)
        self.cond_BD = attention_pool(m.text_proj_for_sos.ca, kv, rows.lens, self.ca_bf16)  # (R, D)
        feats = text_to_ca(m, kv)
        padded, mask = pad_rows(feats, rows.lens)
        self.text = TextContext(padded, list(rows.lens), mask, {})
        self.gss = shared_gss(m, self.cond_BD)  # (R, 1, 6, C) fp32

    # -- protocol ------------------------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.batch * (2 if self.guidance == "cfg" else 1)

    def units(self, kind: str) -> list[list]:
        if kind == "chunk":
            return [list(c) for c in self._chunks]
        if kind == "block":
            return [[b] for c in self._chunks for b in c]
        raise ValueError(f"kind: expected one of {UNIT_KINDS}, got {kind!r}")

    def rope_table(self, si: int) -> torch.Tensor:
        """fp32 ``(2, h*w, head_dim/2)`` cos/sin of scale ``si`` (positions in final-grid units)."""
        return self._rope_tables[si]

    def rope_angles(self, si: int, positions: torch.Tensor | None) -> torch.Tensor:
        """``(cos, sin)`` of a call at scale ``si`` (:func:`rope.gather_pair`); the gather of the last ``positions``
        tensor is reused, so a unit's blocks share one gather."""
        if positions is None:
            return rope.gather_pair(self._rope_tables[si], None)
        last_si, last_pos, pair = self._rope_gathered
        if last_si != si or last_pos is not positions:
            pair = rope.gather_pair(self._rope_tables[si], positions)
            self._rope_gathered = (si, positions, pair)
        return pair

    def cross_attend(self, block, x: torch.Tensor) -> torch.Tensor:
        """``block``'s cross-attention (``ca(ca_norm(x), text)``) on ``x`` ``(R, L, C)`` over this generation's text
        rows: ``(R, L, C)`` in the projection's dtype (call inside :meth:`autocast`)."""
        return cross_attention(block, x, self.text, self.ca_bf16, self.block_consts(block))

    def block_consts(self, block) -> BlockConsts:
        """The per-generation constants of ``block`` (rows of the current guidance)."""
        return self.consts[self._block_index[id(block)]]

    def block_kv(self, block):
        """The KV-cache reservation of ``block`` (:meth:`stagevar.engine.StaticKV.reserve` for its index)."""
        index = self._block_index[id(block)]
        return lambda length, dtype: self.kv.reserve(index, length, dtype)

    @torch.no_grad()
    def scale_input(self, si: int) -> torch.Tensor:
        m = self.model
        self._layer = 0
        with self._amp():
            if si == 0:
                R = self.rows
                x = self.cond_BD.unsqueeze(1).expand(R, 1, -1) + m.pos_start.expand(R, 1, -1)
            else:
                if self.summed is None:
                    raise RuntimeError("scale_input: no codes accumulated yet (finish_scale(0, ...) first)")
                inp = bitwise.next_input(self.summed, self.vae_scales[si], self.patchify)
                if self.record:
                    self._pending_input = inp
                x = embed_codes(m, inp)
                x = x.repeat(self.rows // self.batch, 1, 1)
            x += m.lvl_embed.weight[si]  # in place, as upstream's add_lvl_embeding
        return x

    @torch.no_grad()
    def run_block(self, block, x: torch.Tensor, si: int, positions: torch.Tensor | None = None) -> torch.Tensor:
        h, w = self.scales[si]
        if positions is None and x.shape[1] != h * w:
            raise ValueError(f"x: {x.shape[1]} tokens at scale {si} ({h}x{w}) need explicit positions")
        with self._amp():
            if self.engine == "upstream":  # upstream's data flow: unfused math, the cache grown by cat
                cs = rope.gather_table(self._rope_tables[si], positions)
                x, kv = block_forward_upstream(
                    block, x, self.gss, self.text, cs, self._cat_kv.get(id(block)), None, self.ca_bf16
                )
                self._cat_kv[id(block)] = kv
            else:
                cs = self.rope_angles(si, positions)
                consts = self.consts[self._block_index[id(block)]]
                x = block_forward(block, x, self.text, cs, self.block_kv(block), consts, None, self.ca_bf16)
        layer, self._layer = self._layer, self._layer + 1
        cfg = self.cfg_list[si]
        if self.guidance == "cfg" and cfg != 1 and layer in self.cfg_layers:  # upstream's CFG on a hidden state
            if positions is not None:
                raise ValueError(
                    "cfg_insertion_layer: CFG on a hidden state cannot mix rows of projected tokens (each row has "
                    "its own positions); use null or cond guidance in the fidelity steps, or cfg_insertion_layer=0"
                )
            B = self.batch
            x = cfg * x[:B] + (1 - cfg) * x[B:]
            x = torch.cat((x, x), 0)
        return x

    def set_guidance(self, guidance: str) -> None:
        if guidance not in GUIDANCES:
            raise ValueError(f"guidance: expected one of {GUIDANCES}, got {guidance!r}")
        rows = rows_for(self.guidance, guidance, self.batch)
        if rows == slice(None):
            return
        self.kv.keep_rows(rows)
        self._cat_kv = {k: (a[rows], b[rows]) for k, (a, b) in self._cat_kv.items()}
        self.consts = [c.select(rows) for c in self.consts]
        self.text = self.text.select(rows)
        self.cond_BD = self.cond_BD[rows]
        self.gss = self.gss[rows]
        self.guidance = guidance

    @torch.no_grad()
    def finish_scale(self, si: int, x: torch.Tensor) -> None:
        B = self.batch
        h, w = self.scales[si]
        cfg, tau = self.cfg_list[si], self.tau_list[si]
        with torch.autocast(device_type=self.device.type, enabled=False):
            if self.guidance == "cfg" and cfg != 1 and self.cfg_on_logits:
                raw = head_logits(self.model, x, modulation=self._head_modulation(self.rows))
                logits = raw.mul(1 / tau)
                logits = cfg * logits[:B] + (1 - cfg) * logits[B:]
            else:
                xr = x[:B] if self.guidance == "cfg" else x
                raw = head_logits(self.model, xr, modulation=self._head_modulation(B))
                logits = raw.mul(1 / tau)
            rec = {"head_logits": raw, "logits": logits.clone()} if self.record else None
            sample = bitwise.sample_bits_upstream if self.engine == "upstream" else bitwise.sample_bits
            bits = sample(logits, self.top_k, self.top_p, self.generators)
            codes = bitwise.bits_to_codes(bits, h, w, self.codebook_dim, self.patchify)
            last = si == len(self.scales) - 1
            self.summed = bitwise.accumulate(self.summed, codes, self.vae_scales[-1], last)
        if rec is not None:
            rec["bits"] = bits
            rec["input"] = getattr(self, "_pending_input", None) if si > 0 else None
            rec["si"] = si
            self.records.append(rec)

    def _head_modulation(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's AdaLN scale/shift of the first ``rows`` rows of ``cond_BD``, once per guidance and row count
        (computed on exactly those rows, as upstream: a matrix product's bits may depend on its row count)."""
        key = (self.guidance, rows)
        if key not in self._head_mod:
            self._head_mod[key] = head_modulation(self.model, self.cond_BD[:rows])
        return self._head_mod[key]

    # -- CUDA graphs (stagevar.engine.graphs) ---------------------------------------------------------------------
    def plan_scales(self, n: int) -> None:
        """Size the KV cache for the first ``n`` scales only (the computed ones: skipped final steps hold no keys).
        Call before the first step."""
        if not 1 <= int(n) <= len(self.scales):
            raise ValueError(f"n: expected 1..{len(self.scales)} computed scales, got {n}")
        self.kv.set_capacity(sum(h * w for h, w in self.scales[: int(n)]))

    def graph_inputs(self) -> list[torch.Tensor]:
        """The set-up tensors the computed steps read that depend on the prompts, in a fixed order: every block's
        ``ada`` (``ada_gss + gss``) and text K/V, then the text mask if any. Rows of the set-up guidance (call before
        any :meth:`set_guidance`; a guidance switch only makes views of them)."""
        if self.rows != self.batch * (2 if self.use_cfg else 1):
            raise RuntimeError("graph_inputs: call before set_guidance (the workspace holds the set-up rows)")
        blocks = [b for chunk in self._chunks for b in chunk]
        tensors = []
        for block, consts in zip(blocks, self.consts):
            tensors += [consts.ada, *self.text.kv[id(block)]]
        if self.text.mask is not None:
            tensors.append(self.text.mask)
        return tensors

    def graph_signature(self) -> tuple:
        """What the computed steps bake in besides shapes: amp dtype, ``ca_bf16``, the text lengths (they decide
        the text rows kept at a guidance switch), where CFG mixes. ``ValueError`` naming ``cuda_graphs`` for a
        session whose steps cannot be captured."""
        if self.engine != "static":
            raise ValueError(
                "cuda_graphs: an engine='upstream' session grows its KV cache by cat (new addresses every step); "
                "use engine='static'"
            )
        if self.cfg_layers:
            raise ValueError(
                "cuda_graphs: CFG on a hidden state (cfg_insertion_layer != 0) is not graphed; use "
                "cfg_insertion_layer=0 (CFG on the logits, every official script)"
            )
        return (self.amp_dtype, bool(self.ca_bf16), tuple(self.text.lens), self.cfg_on_logits, self.patchify)

    def release_state(self) -> None:
        """Free the KV cache and the text K/V (decoding needs only the codes)."""
        self.kv.release()
        self._cat_kv.clear()
        self.text.kv.clear()

    def codes(self) -> torch.Tensor | None:
        """Accumulated codes fp32 ``(B, dv, 1, H, W)`` at full latent resolution (None before the first scale)."""
        return self.summed

    @torch.no_grad()
    def decode(self) -> torch.Tensor:
        if self.summed is None:
            raise RuntimeError("decode: no scale finished yet")
        self.release_state()
        with self._amp():
            img = self.vae.decode(self.summed.squeeze(-3))
        return ((img.float() + 1) / 2).clamp_(0, 1)


def new_session(model, vae, scale_schedule, text, **kwargs) -> InfinitySession:
    """Start one generation.

    Args:
        model: our ``Infinity`` or an official ``Infinity`` object; vae: ours or the official ``AutoEncoder``.
        scale_schedule: ``[(h, w)]`` or upstream ``[(1, h, w)]``; a prefix of a predefined template (see schedules).
        text: :class:`TextFeatures` or upstream ``(kv_compact, lens, cu_seqlens_k, max_seqlen_k)``; B = its prompts.
        batch: optional check of B. negative_text: like ``text`` (B prompts or 1, broadcast); None = ``cfg_uncond``.
        seeds: None (torch's default generator), an int (one generator, upstream's draws for any B) or B ints (one
            generator per item: item b equals a B=1 run with seed ``seeds[b]``).
        cfg_list, tau_list: a number or one per scale. CFG rows are used iff some cfg != 1.
        top_k, top_p: upstream's sampling rule (900 and 0.97 by default).
        record: keep per-scale logits and bits in ``session.records``.
        amp_dtype: autocast dtype (``"auto"``: bf16 on CUDA as upstream's scripts, none on CPU).
        ca_bf16: run fp32 cross-attention in bf16, as upstream's flash_attn call does (for comparisons with upstream).
        cfg_insertion_layer: upstream's choice of where CFG mixes the two branches: 0 (the logits; every official
            script) or ``-k`` (the output of block ``depth - k``, then logits of the prompt rows; ``gen_one_img``'s
            default -5), or a list of such values.
        engine: ``"static"`` (preallocated KV cache, fused block ops: the library's engine) or ``"upstream"``
            (upstream's data flow: the KV cache grown by ``cat``, unfused block math; the same bits on CPU), the
            baseline the benchmark times.
    """
    return InfinitySession(model, vae, scale_schedule, text, **kwargs)
