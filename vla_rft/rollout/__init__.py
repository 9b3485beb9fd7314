"""Episodes on an Environment: one loop (`episode_loop.py`) under expert collection
(`collect.py`), closed-loop evaluation (`vla_rft.evaluation.eval_policy`) and corrections
(`corrections.py`), and the report every evaluation writes (`report.py`). Torch-free."""
