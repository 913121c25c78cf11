"""Training (torch, optional extra `tinct[train]`): data, hint simulation, loop, export."""
