# the stable pass's LP and basis copied into fresh Highs objects, solved with option variants
VARIANTS = {"base": {}, "scale 1": {"simplex_scale_strategy": 1}, "scale 0": {"simplex_scale_strategy": 0},
            "devex": {"simplex_dual_edge_weight_strategy": 1}, "primal": {"simplex_strategy": 4},
            "no perturb": {"dual_simplex_cost_perturbation_multiplier": 0.0}}
_orig_run10 = lp_mod.HighsModel._run
def _run10(self, end, what):
    if what.startswith("the plan closest"):
        h = self.highs; lp = h.getLp(); basis = h.getBasis(); got = {}
        for name, opts in VARIANTS.items():
            h2 = highspy.Highs(); h2.setOptionValue("output_flag", False)
            for k, v in {**lp_mod.HIGHS_OPTIONS, **opts}.items():
                h2.setOptionValue(k, v)
            h2.passModel(lp); h2.setBasis(basis); h2.run()
            got[name] = int(h2.getInfo().simplex_iteration_count)
        print("    variants:", got, flush=True)
    return _orig_run10(self, end, what)
lp_mod.HighsModel._run = _run10
