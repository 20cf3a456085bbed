"""Every message type of our interface package, for tests that must cover them all."""

from regiongpt_ros.msg import (
    LabelMap,
    NodeStatus,
    ReferQuery,
    ReferResult,
    RegionDescription,
    RegionDescriptionArray,
    RegionPrompt,
    RegionPromptArray,
    StreamStatus,
)

MESSAGE_TYPES = (
    RegionDescription,
    RegionDescriptionArray,
    ReferQuery,
    ReferResult,
    LabelMap,
    RegionPrompt,
    RegionPromptArray,
    StreamStatus,
    NodeStatus,
)
