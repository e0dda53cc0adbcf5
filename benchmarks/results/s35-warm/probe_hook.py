# the stable pass's LP and basis in a fresh Highs object: status/bound mismatches, and the
# duals HiGHS reports at its start (iteration limit 0) for nonbasic variables of the wrong sign
_orig_run11 = lp_mod.HighsModel._run
def _run11(self, end, what):
    if what.startswith("the plan closest"):
        h = self.highs; lp = h.getLp(); basis = h.getBasis()
        cs = np.array([int(s) for s in basis.col_status]); rs = np.array([int(s) for s in basis.row_status])
        cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
        rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
        S = highspy.HighsBasisStatus; L, U, Z, B = int(S.kLower), int(S.kUpper), int(S.kZero), int(S.kBasic)
        mism = {"col L@-inf": int(((cs == L) & ~np.isfinite(cl)).sum()), "col U@inf": int(((cs == U) & ~np.isfinite(cu)).sum()),
                "row L@-inf": int(((rs == L) & ~np.isfinite(rl)).sum()), "row U@inf": int(((rs == U) & ~np.isfinite(ru)).sum()),
                "col Z": int((cs == Z).sum()), "row Z": int((rs == Z).sum())}
        h2 = highspy.Highs(); h2.setOptionValue("output_flag", False)
        for k, v in {**lp_mod.HIGHS_OPTIONS, "simplex_iteration_limit": 0}.items():
            h2.setOptionValue(k, v)
        h2.passModel(lp); h2.setBasis(basis); h2.run()
        sol = h2.getSolution()
        cd, rd = np.asarray(sol.col_dual), np.asarray(sol.row_dual)
        def wrong(status, dual, lo, up):
            onesided = np.isfinite(lo) != np.isfinite(up)
            free = ~np.isfinite(lo) & ~np.isfinite(up)
            bad = ((status == L) & (dual < -1e-7)) | ((status == U) & (dual > 1e-7)) | ((status == Z) & (np.abs(dual) > 1e-7))
            return int((bad & onesided).sum()), int((bad & free).sum()), np.flatnonzero(bad & (onesided | free))[:5].tolist()
        print("    probe:", mism, "wrong-sign one-sided/free cols", wrong(cs, cd, cl, cu), "rows", wrong(rs, rd, rl, ru),
              h2.modelStatusToString(h2.getModelStatus()), flush=True)
    return _orig_run11(self, end, what)
lp_mod.HighsModel._run = _run11
