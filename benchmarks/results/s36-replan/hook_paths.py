# label _hold_running's runs: the held LP, its min-rate rounds, the unheld fallback
_orig_reset = lp_mod.HighsModel.reset_lower
def _reset(self):
    runs.append(("-- fallback: unheld again --", None, 0.0))
    return _orig_reset(self)
lp_mod.HighsModel.reset_lower = _reset
_orig_raise = lp_mod.HighsModel.raise_lower
def _raise(self, c, s, w):
    runs.append((f"-- held {len(c)} entries --", None, 0.0))
    return _orig_raise(self, c, s, w)
lp_mod.HighsModel.raise_lower = _raise
_orig_pause = lp_mod.HighsModel.pause
def _pause(self, c, s):
    n = _orig_pause(self, c, s)
    runs.append((f"-- paused {n} later --", None, 0.0))
    return n
lp_mod.HighsModel.pause = _pause
