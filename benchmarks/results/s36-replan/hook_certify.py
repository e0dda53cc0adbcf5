# energy first proved from the objective's basis (energy_bound_wh) in every solve, also when
# HiGHS runs follow (the tree certifies only when none does)
_orig_solve = lp_mod.HighsModel.solve
def _solve(self, *a, **k):
    self.certify_energy = True
    return _orig_solve(self, *a, **k)
lp_mod.HighsModel.solve = _solve
