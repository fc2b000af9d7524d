"""A run assembled from its config: ``build`` (config -> parts), ``scoring`` (the pool and its proxy scores),
``runner`` (one search), ``results`` (result.json and the plots).

Importing the package registers hnas's OmegaConf resolvers (``${hnas_run_dir:}``, ``${hnas_profile:GPU,CPU}``):
every config of ``hnas/conf`` that uses them resolves wherever it is composed (CLI, tests, notebooks).
"""

from hnas.experiment.build import register_resolvers

register_resolvers()
