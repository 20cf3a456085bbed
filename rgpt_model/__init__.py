"""RegionGPT model library: region-aware LLaVA-style VLM, no ROS dependency."""
