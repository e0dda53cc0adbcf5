# the EARLY term moved onto the deviation columns (x = previous + up - down on every deviation
# row, so -EARLY w x = const - EARLY w up + EARLY w down: the same LP up to a constant), in fresh
# copies of the pass's LP and basis; "+box" also bounds up <= ub_x - previous (implied at any optimum)
_orig_run13 = lp_mod.HighsModel._run
def _run13(self, end, what):
    if what.startswith("the plan closest"):
        h = self.highs; lp = h.getLp(); basis = h.getBasis()
        n0 = self.restricted[0]; n = int(h.getNumCol()); k = (n - n0) // 2
        cost = np.asarray(lp.col_cost_).copy(); cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
        w = cost[n0:n0 + k]
        a = lp.a_matrix_
        # the x column of each deviation row: the rows after restricted[1], entries [x, up, down]
        n_rows0 = self.restricted[1]
        import scipy.sparse as sp
        A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(int(h.getNumRow()), n)).tocsr()
        xs = np.array([A.indices[A.indptr[r]:A.indptr[r + 1]].min() for r in range(n_rows0, n_rows0 + k)])
        early = -cost[xs]            # EARLY * weight on those x (0 where no EARLY term)
        c2 = cost.copy(); c2[xs] = 0.0; c2[n0:n0 + k] = w - early; c2[n0 + k:] = w + early
        prev = np.asarray(lp.row_lower_)[n_rows0:n_rows0 + k]
        def run_with(c, box):
            h2 = highspy.Highs(); h2.setOptionValue("output_flag", False)
            for kk, v in lp_mod.HIGHS_OPTIONS.items():
                h2.setOptionValue(kk, v)
            h2.passModel(lp); h2.changeColsCost(n, np.arange(n, dtype=np.int32), c)
            if box:
                up_cols = np.arange(n0, n0 + k, dtype=np.int32)
                h2.changeColsBounds(k, up_cols, np.zeros(k), np.maximum(cu[xs] - prev, 0.0))
            h2.setBasis(basis); h2.run()
            return int(h2.getInfo().simplex_iteration_count), round(h2.getInfo().objective_function_value + float(early @ prev), 4)
        print("    reform: as is", run_with(cost, False), "reformed", run_with(c2, False), "reformed+box", run_with(c2, True), flush=True)
    return _orig_run13(self, end, what)
lp_mod.HighsModel._run = _run13
