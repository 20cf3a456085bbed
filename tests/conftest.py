"""Suite-wide settings: DDS isolation, so parallel runs on one machine never see each other."""

import os
import random

# Child processes (nodes under test, echo servers) inherit these through os.environ.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random().randint(101, 200)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
