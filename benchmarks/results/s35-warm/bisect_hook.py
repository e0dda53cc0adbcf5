# the bad pass's LP and basis in fresh Highs objects with parts of the pass's objective removed:
# which part of the new costs sends the dual simplex into phase 1?
_orig_run12 = lp_mod.HighsModel._run
def _run12(self, end, what):
    if what.startswith("the plan closest"):
        h = self.highs; lp = h.getLp(); basis = h.getBasis()
        n_before = self.restricted[0]
        cost = np.asarray(lp.col_cost_)
        def run_with(c):
            h2 = highspy.Highs(); h2.setOptionValue("output_flag", False)
            for k, v in lp_mod.HIGHS_OPTIONS.items():
                h2.setOptionValue(k, v)
            h2.passModel(lp); h2.changeColsCost(int(c.size), np.arange(c.size, dtype=np.int32), c)
            h2.setBasis(basis); h2.run()
            return int(h2.getInfo().simplex_iteration_count)
        early_off = cost.copy(); early_off[:n_before] = 0.0
        dev_off = cost.copy(); dev_off[n_before:] = 0.0
        half = cost.copy(); half[:n_before] *= 0.5
        print("    bisect: as is", run_with(cost), "EARLY term off", run_with(early_off),
              "deviation costs off", run_with(dev_off), "EARLY halved", run_with(half), flush=True)
    return _orig_run12(self, end, what)
lp_mod.HighsModel._run = _run12
