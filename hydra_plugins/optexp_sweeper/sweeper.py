"""`hydra/sweeper=optexp`, optexp's default sweeper: Hydra's basic sweeper (the same
overrides, `params`, batches, order and check of every job before launching) whose jobs,
in the check and in the launcher, are composed by `optexp.cli.compose.ChoicesConfigLoader`:
each set of config-group choices once, not every job twice (benchmarks/RESULTS.md)."""

from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from optexp.cli.compose import ChoicesConfigLoader


@dataclass
class OptexpSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.optexp_sweeper.sweeper.OptexpSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="optexp", node=OptexpSweeperConf)


class OptexpSweeper(BasicSweeper):
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        loader = ChoicesConfigLoader(hydra_context.config_loader)
        context = HydraContext(config_loader=loader, callbacks=hydra_context.callbacks)
        super().setup(hydra_context=context, task_function=task_function, config=config)
