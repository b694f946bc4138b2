"""Baselines beside the graph models (``paratag.baselines``), kept out of the graph-model contract.

- :mod:`~paratag.baselines.resnet`: ResNet-15 on jet or calorimeter images (registered as
  ``resnet15``), its ONNX export;
- :mod:`~paratag.baselines.images`: jet images from NanoAOD/PFNano and a toy e/γ
  calorimeter simulation;
- :mod:`~paratag.baselines.masked_autoencoder`: the masked Transformer autoencoder for
  tabular event features (registered as ``masked_autoencoder``);
- :mod:`~paratag.baselines.tabular`: those features from NanoAOD and a toy charged-Higgs
  event generator.

They train with the same loop (:func:`paratag.training.loop.fit`) and are built by
name through the same registry (:func:`paratag.models.build_model`).
"""
