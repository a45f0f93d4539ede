"""The sweep's Slurm launcher as a Hydra plugin (Hydra takes launchers only from the
``hydra_plugins`` namespace): ``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml) builds on
the ``pipeline_slurm`` config stored here.  The code is in :mod:`pipeline.cluster.slurm`.

Without hydra-submitit-launcher (the ``cluster`` extra) there is nothing to register: Hydra scans
this package on every start, and a missing optional extra must not warn there."""

from importlib.util import find_spec

if find_spec("hydra_plugins.hydra_submitit_launcher") is not None:
    from hydra.core.config_store import ConfigStore

    from pipeline.cluster.slurm import PipelineSlurmConf, SweepSlurmLauncher

    class SlurmLauncher(SweepSlurmLauncher):
        """pipeline.cluster.slurm.SweepSlurmLauncher, where Hydra looks for launchers."""

    ConfigStore.instance().store(group="hydra/launcher", name="pipeline_slurm", node=PipelineSlurmConf, provider="pipeline")
