# fresh copies of the pass's LP and basis; before the run, every nonbasic boxed column whose
# reduced cost under the pass's costs has the wrong sign for its bound is moved to its other
# bound in the basis handed to HiGHS (what HiGHS's correctDual would flip)
_orig_run14 = lp_mod.HighsModel._run
def _run14(self, end, what):
    if what.startswith("the plan closest"):
        import scipy.sparse as sp
        h = self.highs; lp = h.getLp(); basis = h.getBasis()
        n, m = int(h.getNumCol()), int(h.getNumRow())
        a = lp.a_matrix_
        A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n))
        c = np.asarray(lp.col_cost_)
        _, basic = h.getBasicVariables()
        rhs = np.where(basic >= 0, c[np.maximum(basic, 0)], 0.0)
        _, y = h.getBasisTransposeSolve(rhs); y = np.asarray(y)
        d = c - A.T @ y
        S = highspy.HighsBasisStatus
        cs = np.array([int(s) for s in basis.col_status]); rs = np.array([int(s) for s in basis.row_status])
        cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
        rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
        boxed = np.isfinite(cl) & np.isfinite(cu) & (cl < cu)
        up_ = boxed & (cs == int(S.kLower)) & (d < -1e-7)
        down_ = boxed & (cs == int(S.kUpper)) & (d > 1e-7)
        rboxed = np.isfinite(rl) & np.isfinite(ru) & (rl < ru)
        rup = rboxed & (rs == int(S.kLower)) & (y < -1e-7)
        rdown = rboxed & (rs == int(S.kUpper)) & (y > 1e-7)
        def run_with(b):
            h2 = highspy.Highs(); h2.setOptionValue("output_flag", False)
            for kk, v in lp_mod.HIGHS_OPTIONS.items():
                h2.setOptionValue(kk, v)
            h2.passModel(lp); h2.setBasis(b); h2.run()
            return int(h2.getInfo().simplex_iteration_count), h2.getInfo().objective_function_value
        before = run_with(basis)
        after = None
        if up_.any() or down_.any() or rup.any() or rdown.any():
            col = list(basis.col_status); row = list(basis.row_status)
            for j in np.flatnonzero(up_): col[j] = S.kUpper
            for j in np.flatnonzero(down_): col[j] = S.kLower
            for i in np.flatnonzero(rup): row[i] = S.kUpper
            for i in np.flatnonzero(rdown): row[i] = S.kLower
            b2 = h.getBasis(); b2.col_status = col; b2.row_status = row
            after = run_with(b2)
        print("    preflip:", int(up_.sum() + down_.sum()), "cols", int(rup.sum() + rdown.sum()), "rows; as is", before, "pre-flipped", after, flush=True)
    return _orig_run14(self, end, what)
lp_mod.HighsModel._run = _run14
