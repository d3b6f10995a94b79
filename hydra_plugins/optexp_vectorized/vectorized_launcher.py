"""`hydra/launcher=vectorized`: Hydra finds launchers in the hydra_plugins namespace
package. This module stays light (Hydra imports every plugin at start-up); the work is
in `optexp.vector.launcher`."""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.optexp_vectorized.vectorized_launcher.VectorizedLauncher"
    # false: stack only jobs that differ in their seeds, each stack stepped by torch's own
    # optimizer; true: a study's trials too, with a stacked step per member's values
    trials: bool = True


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf)


class VectorizedLauncher(Launcher):
    """Runs a sweep's jobs in this process, those that differ only in their seeds (and,
    with `trials`, in elementwise optimizer values and schedules) as one vectorized group
    each (`optexp.vector`)."""

    def __init__(self, trials: bool = True) -> None:
        self.trials = trials

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from optexp.vector.launcher import launch

        return launch(self, job_overrides, initial_job_idx)
