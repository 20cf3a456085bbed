"""Training/evaluation data: synthetic scenes, the JSONL region-instruction format, loaders.

numpy/PIL only (no torch), so these modules work in any environment; the exception is
``synthetic_aux``, the synthetic world's training aids (torch), which the trainer loads.
Public entry points: ``synthetic.generate_scene`` (one scene), ``demo_frames.demo_frames``
(the demo bag's frames), ``jsonl_format`` (records), ``region_captions`` (the paper's
automatic region-caption pipeline).
"""
