"""A run assembled from its config: ``build`` (config -> parts), ``scoring`` (the pool and its proxy scores),
``runner`` (one search), ``results`` (result.json and the trajectory plot)."""
