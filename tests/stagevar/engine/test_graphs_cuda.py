"""GPU tier (skipped without CUDA): the real ``torch.cuda.CUDAGraph`` path. Graphed equals eager bit for bit in
bf16 autocast over two generations with new prompts and seeds, and only the first generation captures."""

import pytest
import torch

import stagevar
from stagevar import presets, zoo
from stagevar.engine import graphs
from stagevar.models.infinity import get_scale_schedule
from stagevar.models.infinity import new_session as infinity_session
from stagevar.models.star import new_session as star_session
from stagevar.timing import CUDAEventTimer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


class CountingFactory(graphs.CUDAGraphFactory):
    """The production factory, counting the graphs it hands out."""

    def __init__(self):
        super().__init__()
        self.captures = 0

    def graph(self, pool):
        self.captures += 1
        return super().graph(pool)


@pytest.fixture(scope="module")
def models():
    return {"infinity": zoo.build("infinity-tiny", "cuda"), "star": zoo.build("star-tiny", "cuda")}


def _session(family, tiny, batch, seed):
    seeds = [seed + i for i in range(batch)]
    if family == "infinity":
        text = zoo.random_infinity_text(tiny.model.text_norm.weight.shape[0], batch, seed, device="cuda")
        schedule = get_scale_schedule(1.0, "0.06M")
        return infinity_session(
            tiny.model, tiny.vae, schedule, text, cfg_list=3.0, tau_list=0.5, seeds=seeds, amp_dtype=torch.bfloat16
        )
    width = tiny.model.blocks[0].cross_attn.mat_kv.weight.shape[1]
    text = zoo.random_star_text(batch, seed, width, device="cuda")
    return star_session(tiny.model, tiny.vae, text, batch=batch, seeds=seeds, cfg=4.5, amp_dtype=torch.bfloat16)


@pytest.mark.parametrize("family", ["infinity", "star"])
@pytest.mark.parametrize("preset", ["vanilla", "paper"])
def test_cuda_graphs_equal_eager_bit_for_bit(models, family, preset):
    tiny, schedule = models[family], presets(family)[preset]
    graphs.clear()
    factory = CountingFactory()
    counts = []
    for gen, seed in enumerate((0, 7)):
        timer = CUDAEventTimer()
        with graphs.use_factory(factory):
            graphed = stagevar.generate(
                _session(family, tiny, 2, seed), schedule, seed=seed, timer=timer, cuda_graphs=True
            )
        eager = stagevar.generate(_session(family, tiny, 2, seed), schedule, seed=seed)
        assert torch.equal(graphed, eager), f"generation {gen}"
        assert ("capture" in timer.finish()) == (gen == 0)
        counts.append(factory.captures)
    assert counts[0] > 0 and counts[1] == counts[0]
    graphs.clear()
