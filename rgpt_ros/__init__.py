"""ROS 2 adapter for rgpt_model: message conversion, synchronisation, the node, bag tools."""
