"""`hydra/sweeper=optexp`, the studies' sweeper (and any large sweep's): Hydra's basic
sweeper (the same overrides, `params`, batches and order) whose check before launching
composes one job for each override value rather than every job. Hydra's composes every
job there and again to run it, twice per job; this finds the same misspelled option or key
(each value is composed) at a cost that grows with the values, not with their product
(benchmarks/RESULTS.md). A composition error that only a combination of values shows
(rare: optexp's options are open dicts, their keys checked in each job) is found when
that job is composed instead."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class OptexpSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.optexp_sweeper.sweeper.OptexpSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="optexp", node=OptexpSweeperConf)


class OptexpSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        super().validate_batch_is_legal(covering(batch))


def covering(batch: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """The jobs that each hold an override no earlier job held, in order: every value of
    every swept key is in one of them."""
    seen: set[str] = set()
    chosen = []
    for overrides in batch:
        if not seen.issuperset(overrides):
            chosen.append(overrides)
            seen.update(overrides)
    return chosen
