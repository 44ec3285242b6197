"""``arcstream demo``: the main job on the single-machine default, end to end."""
