# the kept model's next re-plan starts from the basis of this re-plan's first (unheld) optimum,
# not from the held LP's optimum (whose held columns sit at raised lower bounds that the next
# LP resets to 0)
_orig_raise2 = lp_mod.HighsModel.raise_lower
def _raise2(self, c, s, w):
    if getattr(self, "free_basis", None) is None:
        self.free_basis = self.highs.getBasis()
    return _orig_raise2(self, c, s, w)
lp_mod.HighsModel.raise_lower = _raise2
_orig_stab = lp_mod.HighsModel.stabilise
def _stab(self, *a, **k):
    out = _orig_stab(self, *a, **k)
    if getattr(self, "free_basis", None) is not None:
        self.face_basis = self.free_basis
    return out
lp_mod.HighsModel.stabilise = _stab
