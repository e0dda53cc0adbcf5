import numpy as np, highspy, os
from optimizer import stable as st, lp as lp_mod
FIX = os.environ["FIX"]
if FIX == "noperturb":
    _orig_run3 = lp_mod.HighsModel._run
    def _run3(self, end, what):
        if what.startswith("the plan closest"):
            self.highs.setOptionValue("dual_simplex_cost_perturbation_multiplier", 0.0)
            try:
                return _orig_run3(self, end, what)
            finally:
                self.highs.setOptionValue("dual_simplex_cost_perturbation_multiplier", 1.0)
        return _orig_run3(self, end, what)
    lp_mod.HighsModel._run = _run3
if FIX == "box":
    _orig_restrict = st.restrict_to_optimal_face
    def restrict(highs):
        _orig_restrict(highs)
        lp = highs.getLp(); a = lp.a_matrix_
        import scipy.sparse as sp
        n, m = lp.num_col_, lp.num_row_
        A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n)).tocsr()
        rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
        cl = np.asarray(lp.col_lower_)
        neg = np.zeros(m, bool)
        bad = (A.data < 0) | (cl[A.indices] < 0)
        np.logical_or.at(neg, np.repeat(np.arange(m), np.diff(A.indptr)), bad)
        rows = np.flatnonzero(~np.isfinite(rl) & np.isfinite(ru) & ~neg).astype(np.int32)
        highs.changeRowsBounds(int(rows.size), rows, np.zeros(rows.size), ru[rows])
    st.restrict_to_optimal_face = restrict
if FIX == "primal":
    _orig_add = st.add_deviation
    def add(highs, variables, previous_w, weight):
        x = np.asarray(highs.getSolution().col_value)[variables]
        n_cols, n_rows = int(highs.getNumCol()), int(highs.getNumRow())
        _orig_add(highs, variables, previous_w, weight)
        b = highs.getBasis()
        k = variables.size
        cs = list(b.col_status); rs = list(b.row_status)
        B, L = highspy.HighsBasisStatus.kBasic, highspy.HighsBasisStatus.kLower
        over = x > previous_w
        for i in range(k):
            rs[n_rows + i] = L
            cs[n_cols + i] = B if over[i] else L
            cs[n_cols + k + i] = L if over[i] else B
        b.col_status = cs; b.row_status = rs
        print("    setBasis", highs.setBasis(b))
        highs.setOptionValue("simplex_strategy", 4)
    st.add_deviation = add
    _orig_run4 = lp_mod.HighsModel._run
    def _run4(self, end, what):
        try:
            return _orig_run4(self, end, what)
        finally:
            if what.startswith("the plan closest"):
                self.highs.setOptionValue("simplex_strategy", 1)
    lp_mod.HighsModel._run = _run4
if FIX.startswith("dualtol"):
    _tol = float(FIX[len("dualtol"):] or 1e-5)
    _orig_run5 = lp_mod.HighsModel._run
    def _run5(self, end, what):
        if what.startswith("the plan closest"):
            self.highs.setOptionValue("dual_feasibility_tolerance", _tol)
            try:
                return _orig_run5(self, end, what)
            finally:
                self.highs.setOptionValue("dual_feasibility_tolerance", 1e-7)
        return _orig_run5(self, end, what)
    lp_mod.HighsModel._run = _run5
if FIX in ("boxall", "boxdev"):
    _orig_add2 = st.add_deviation
    def add_boxed(highs, variables, previous_w, weight):
        n_cols = int(highs.getNumCol())
        lo, up = lp_mod.col_bounds(highs, variables.astype(np.int32))
        _orig_add2(highs, variables, previous_w, weight)
        k = variables.size
        cols = (n_cols + np.arange(2 * k)).astype(np.int32)
        # up <= x's upper bound (x <= ub, previous >= 0); down <= previous (x >= 0)
        upper = np.concatenate([np.maximum(up - previous_w, 0.0), np.maximum(previous_w - lo, 0.0)])
        highs.changeColsBounds(int(cols.size), cols, np.zeros(cols.size), upper)
    st.add_deviation = add_boxed
if FIX == "boxall":
    _orig_restrict = st.restrict_to_optimal_face
    def restrict(highs):
        _orig_restrict(highs)
        lp = highs.getLp(); a = lp.a_matrix_
        import scipy.sparse as sp
        n, m = lp.num_col_, lp.num_row_
        A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n)).tocsr()
        rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
        cl = np.asarray(lp.col_lower_)
        neg = np.zeros(m, bool)
        bad = (A.data < 0) | (cl[A.indices] < 0)
        np.logical_or.at(neg, np.repeat(np.arange(m), np.diff(A.indptr)), bad)
        rows = np.flatnonzero(~np.isfinite(rl) & np.isfinite(ru) & ~neg).astype(np.int32)
        highs.changeRowsBounds(int(rows.size), rows, np.zeros(rows.size), ru[rows])
    st.restrict_to_optimal_face = restrict
if FIX.startswith("limit"):
    # the stable pass's dual run capped at LIMIT iterations; if it stops there, the primal
    # simplex from a feasible crash basis (the face optimum, deviation columns basic)
    LIMIT = int(FIX[len("limit"):] or 1500)
    _crash = {}
    _orig_add3 = st.add_deviation
    def add_keep(highs, variables, previous_w, weight):
        x = np.asarray(highs.getSolution().col_value)[variables]
        n_cols, n_rows = int(highs.getNumCol()), int(highs.getNumRow())
        _orig_add3(highs, variables, previous_w, weight)
        b = highs.getBasis()
        k = variables.size
        cs = list(b.col_status); rs = list(b.row_status)
        B, L = highspy.HighsBasisStatus.kBasic, highspy.HighsBasisStatus.kLower
        over = x > previous_w
        for i in range(k):
            rs[n_rows + i] = L
            cs[n_cols + i] = B if over[i] else L
            cs[n_cols + k + i] = L if over[i] else B
        b.col_status = cs; b.row_status = rs
        _crash["basis"] = b
    st.add_deviation = add_keep
    _orig_run7 = lp_mod.HighsModel._run
    def _run7(self, end, what):
        if not what.startswith("the plan closest"):
            return _orig_run7(self, end, what)
        h = self.highs
        h.setOptionValue("simplex_iteration_limit", LIMIT)
        try:
            h.run()
        finally:
            h.setOptionValue("simplex_iteration_limit", 2147483647)
        first = int(h.getInfo().simplex_iteration_count)
        if h.getModelStatus() == highspy.HighsModelStatus.kIterationLimit:
            h.setBasis(_crash["basis"])
            h.setOptionValue("simplex_strategy", 4)
            try:
                z, v, it = _orig_run7(self, end, what)
            finally:
                h.setOptionValue("simplex_strategy", 1)
            print("    limit hit: dual", first, "then primal", it, flush=True)
            return z, v, first + it
        z, v, it = _orig_run7(self, end, what)   # already optimal: 0 iterations
        return z, v, first + it
    lp_mod.HighsModel._run = _run7
