# how far the stable pass's plan stays from the previous allocation in the kept slots (Wh):
# 0 would mean the previous plan was itself on the optimal face (a pass that could be skipped)
_orig_stab3 = lp_mod.HighsModel.stabilise
def _stab3(self, targets, *a, **k):
    power_w, info = _orig_stab3(self, targets, *a, **k)
    variables, previous_w, weight = targets
    x = power_w[self.arrays.x_connector[variables], self.arrays.x_slot[variables]]
    runs.append((f"-- pass: |x - previous| {float(weight @ abs(x - previous_w)):.0f} Wh over "
                 f"{int((abs(x - previous_w) > 1e-6).sum())} of {variables.size} entries --", None, 0.0))
    return power_w, info
lp_mod.HighsModel.stabilise = _stab3
