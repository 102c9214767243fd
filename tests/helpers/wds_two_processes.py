"""Run under ``torch.distributed.run --nproc_per_node 2`` (what ``accelerate launch`` sets up):
``python tests/helpers/wds_two_processes.py SPEC OUT``, with the repository root and ``tests/`` on
``PYTHONPATH``, caches a wds: source with FakeEncoder and prints which shards this process opened."""

import sys

from accelerate import PartialState

from cache_tools.config import CacheConfig
from cache_tools.sources import open_source
from cache_tools.write.webdataset import build_per_shard
from helpers.fakes import FakeEncoder

spec, out = sys.argv[1], sys.argv[2]
state = PartialState(cpu=True)
src = open_source(spec)
opened: list[int] = []
real = src.shard_records
src.shard_records = lambda i, skipped: (opened.append(i), real(i, skipped))[1]
cfg = CacheConfig(encoder="towers:fake", data=spec, out=out, batch_size=2, num_workers=1)
summary = build_per_shard(cfg, src, FakeEncoder(), state, progress=False)
print(
    f"RANK {state.process_index} OF {state.num_processes} OPENED {opened} IMAGES {summary.n_images}",
    flush=True,
)
