"""Research code of RGPT-ROS: experiments and training aids that are not part of the product.

``rgpt_model`` and ``rgpt_ros`` never import this package (a test checks it). Importing it
registers the REC attention supervision and readout losses with the trainer's aux-loss
registry, so a run config that lists ``plugins: [research]`` may use them (the demo recipe,
``rgpt_model/configs/demo.yaml``, does). The probes are scripts:

    python -m research.rec_attention_probe --num-scenes 40
    python -m research.rec_oracle_probe --steps 2000 --identity
"""

from research import rec_attention  # noqa: F401  (registers the REC aux losses)
