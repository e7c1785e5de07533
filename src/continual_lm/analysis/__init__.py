"""Analyses of spurious forgetting (Zheng et al., ICLR 2025) that work on any run folder:
recovery, forgetting decomposition, weight-update angles, loss landscape, Fisher vs angle."""
