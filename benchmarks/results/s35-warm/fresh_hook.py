# the stable pass's LP and basis copied into a fresh Highs object and solved there too:
# does the kept model's own state (scaling, edge weights, earlier runs) decide the blow-up?
_orig_run8 = lp_mod.HighsModel._run
def _run8(self, end, what):
    if what.startswith("the plan closest"):
        h = self.highs
        h2 = highspy.Highs()
        h2.setOptionValue("output_flag", False)
        for name, value in lp_mod.HIGHS_OPTIONS.items():
            h2.setOptionValue(name, value)
        h2.passModel(h.getLp())
        h2.setBasis(h.getBasis())
        h2.run()
        print("    fresh copy:", h2.modelStatusToString(h2.getModelStatus()), int(h2.getInfo().simplex_iteration_count),
              "objective", h2.getInfo().objective_function_value, flush=True)
    return _orig_run8(self, end, what)
lp_mod.HighsModel._run = _run8
if os.environ.get("DUMP"):
    _n_dump = [0]
    _orig_run9 = lp_mod.HighsModel._run
    def _run9(self, end, what):
        if what.startswith("the plan closest"):
            _n_dump[0] += 1
            base = f"{os.environ['DUMP']}/pass{_n_dump[0]}"
            self.highs.writeModel(base + ".mps")
            self.highs.writeBasis(base + ".bas")
        return _orig_run9(self, end, what)
    lp_mod.HighsModel._run = _run9
